-- Orders, order lines, units and revenue per customer and country between two dates, both
-- inclusive. Parameters, in order: start date (YYYY-MM-DD), end date (YYYY-MM-DD).
--   consumer query --lake file://./.lake-demo/lake --file queries/customer_totals.sql \
--     --param 2010-12-01 --param 2010-12-31
-- customer_sales holds one row per (day, customer, country, invoice) in each batch file: an
-- order is a distinct invoice, so COUNT(DISTINCT invoice_no) counts each order once however its
-- lines were spread over shards, batches and files. Lines without a customer are under
-- customer_id '' (the empty string). A cancellation (invoice C...) is an order of its own, with
-- negative units and revenue, as in the source data.
SELECT
  customer_id,
  country,
  COUNT(DISTINCT invoice_no) AS orders,
  SUM(order_lines) AS order_lines,
  SUM(net_quantity) AS net_quantity,
  SUM(net_revenue) AS net_revenue
FROM customer_sales
WHERE sale_date BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)
GROUP BY customer_id, country
ORDER BY net_revenue DESC, customer_id, country

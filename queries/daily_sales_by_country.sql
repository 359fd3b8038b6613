-- Daily sales of one country between two dates, both inclusive.
-- Parameters, in order: country, start date (YYYY-MM-DD), end date (YYYY-MM-DD).
-- The same text runs on Athena (a saved query prompts for the three `?`) and locally:
--   consumer query --lake file://./.lake-demo/lake --file queries/daily_sales_by_country.sql \
--     --param 'United Kingdom' --param 2010-12-01 --param 2010-12-31
-- daily_sales holds one row per key per batch file: SUM folds them into one per day.
SELECT
  sale_date,
  COUNT(DISTINCT stock_code) AS products,
  SUM(order_lines) AS order_lines,
  SUM(units_sold) AS units_sold,
  SUM(units_returned) AS units_returned,
  SUM(net_quantity) AS net_quantity,
  SUM(gross_revenue) AS gross_revenue,
  SUM(refunds) AS refunds,
  SUM(net_revenue) AS net_revenue
FROM daily_sales
WHERE country = ?
  AND sale_date BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)
GROUP BY sale_date
ORDER BY sale_date

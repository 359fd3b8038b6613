-- Top products by net revenue per country: the five best of each country over the whole lake.
-- No parameters. Runs unchanged on Athena and locally:
--   consumer query --lake file://./.lake-demo/lake --file queries/top_products_by_country.sql
WITH product_totals AS (
  SELECT
    country,
    stock_code,
    MAX(description) AS description,
    SUM(net_quantity) AS net_quantity,
    SUM(net_revenue) AS net_revenue
  FROM daily_sales
  GROUP BY country, stock_code
),
ranked AS (
  SELECT
    *,
    ROW_NUMBER() OVER (PARTITION BY country ORDER BY net_revenue DESC, stock_code) AS product_rank
  FROM product_totals
)
SELECT country, product_rank, stock_code, description, net_quantity, net_revenue
FROM ranked
WHERE product_rank <= 5
ORDER BY country, product_rank

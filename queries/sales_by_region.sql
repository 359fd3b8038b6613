-- Sales per UN M49 region and sub-region between two dates, both inclusive.
-- Parameters, in order: start date (YYYY-MM-DD), end date (YYYY-MM-DD).
--   consumer query --lake file://./.lake-demo/lake --file queries/sales_by_region.sql \
--     --param 2010-12-01 --param 2010-12-31
-- regions is the lake's country → region table (reference/regions.csv unless you loaded your
-- own with `consumer regions`); a country it does not list is under 'Unknown', never dropped.
SELECT
  COALESCE(r.region, 'Unknown') AS region,
  COALESCE(r.sub_region, 'Unknown') AS sub_region,
  SUM(d.order_lines) AS order_lines,
  SUM(d.net_quantity) AS net_quantity,
  SUM(d.net_revenue) AS net_revenue
FROM daily_sales d
LEFT JOIN regions r ON r.country = d.country
WHERE d.sale_date BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)
GROUP BY COALESCE(r.region, 'Unknown'), COALESCE(r.sub_region, 'Unknown')
ORDER BY net_revenue DESC, region, sub_region

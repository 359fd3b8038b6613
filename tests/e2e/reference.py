"""Totals computed by DuckDB, independently of our code: from the source CSV, and from the lake."""

import duckdb

# The DESIGN.md input rules, restated in DuckDB SQL: dates month first in four shapes, rows
# without invoice, stock code or country, with a negative price, more than three decimal
# places, a price beyond decimal(18,3), a quantity beyond ±10^9 or a line amount beyond
# decimal(18,3) are not sales.
SALES_FROM_CSV = r"""
WITH raw AS (
  SELECT * FROM read_csv($path, delim = $delim, header = true, all_varchar = true,
                         encoding = $encoding, quote = '"', escape = '"', null_padding = true)
),
typed AS (
  SELECT trim(InvoiceNo) AS invoice_no, trim(StockCode) AS stock_code, trim(Country) AS country,
         TRY_CAST(trim(Quantity) AS BIGINT) AS quantity, trim(UnitPrice) AS price_text,
         trim(InvoiceDate) AS d,
         -- The producer's customer rules: no id, or a missing marker, is '' (the lake's key for
         -- lines without a customer); 17850.0 is 17850.
         CASE
           WHEN coalesce(trim(CustomerID), '') = '' OR lower(trim(CustomerID)) IN ('na', 'n/a', 'nan', 'null', 'none') THEN ''
           WHEN regexp_matches(trim(CustomerID), '^\d+\.0*$') THEN split_part(trim(CustomerID), '.', 1)
           ELSE trim(CustomerID)
         END AS customer_id
  FROM raw
),
sales AS (
  SELECT *, CAST(price_text AS DECIMAL(18,3)) AS price,
    CASE
      WHEN regexp_matches(d, '^\d{4}-') THEN strptime(d, '%Y-%m-%d %H:%M:%S')
      WHEN regexp_matches(d, '^\d{1,2}/\d{1,2}/\d{4} ') THEN strptime(d, '%m/%d/%Y %H:%M')
      WHEN regexp_matches(d, '^\d{1,2}/\d{1,2}/\d{2} ') THEN strptime(d, '%m/%d/%y %H:%M')
      WHEN regexp_matches(d, '^\d{1,2}-\d{1,2}-\d{2} ') THEN strptime(d, '%m-%d-%y %H:%M')
    END AS t
  FROM typed
  WHERE coalesce(invoice_no, '') <> '' AND coalesce(stock_code, '') <> '' AND coalesce(country, '') <> ''
    AND quantity IS NOT NULL
    AND TRY_CAST(price_text AS DECIMAL(38,10)) >= 0
    AND TRY_CAST(price_text AS DECIMAL(38,10)) = TRY_CAST(price_text AS DECIMAL(38,3))
    AND TRY_CAST(price_text AS DECIMAL(38,10)) < 1000000000000000
    AND abs(quantity) <= 1000000000
    AND abs(quantity * TRY_CAST(price_text AS DECIMAL(38,3))) < 1000000000000000
)
"""

REFERENCE_FROM_CSV = SALES_FROM_CSV + r"""
SELECT CAST(t AS DATE) AS sale_date, country, stock_code,
  CAST(SUM(CASE WHEN quantity > 0 THEN quantity ELSE 0 END) AS BIGINT) AS units_sold,
  CAST(SUM(CASE WHEN quantity < 0 THEN -quantity ELSE 0 END) AS BIGINT) AS units_returned,
  CAST(SUM(quantity) AS BIGINT) AS net_quantity,
  CAST(SUM(CASE WHEN quantity > 0 THEN quantity * price ELSE 0 END) AS DECIMAL(38,3)) AS gross_revenue,
  CAST(SUM(CASE WHEN quantity < 0 THEN -quantity * price ELSE 0 END) AS DECIMAL(38,3)) AS refunds,
  CAST(SUM(quantity * price) AS DECIMAL(38,3)) AS net_revenue,
  CAST(COUNT(*) AS BIGINT) AS order_lines
FROM sales
WHERE t IS NOT NULL
GROUP BY ALL
"""

# customer_sales per (sale_date, customer_id, country), orders being distinct invoices.
CUSTOMERS_FROM_CSV = SALES_FROM_CSV + r"""
SELECT CAST(t AS DATE) AS sale_date, customer_id, country,
  CAST(COUNT(DISTINCT invoice_no) AS BIGINT) AS orders,
  CAST(COUNT(*) AS BIGINT) AS order_lines,
  CAST(SUM(quantity) AS BIGINT) AS net_quantity,
  CAST(SUM(quantity * price) AS DECIMAL(38,3)) AS net_revenue
FROM sales
WHERE t IS NOT NULL
GROUP BY ALL
"""

# queries/customer_totals.sql, from the source CSV.
CUSTOMER_TOTALS_FROM_CSV = SALES_FROM_CSV + r"""
SELECT customer_id, country,
  CAST(COUNT(DISTINCT invoice_no) AS BIGINT) AS orders,
  CAST(COUNT(*) AS BIGINT) AS order_lines,
  CAST(SUM(quantity) AS BIGINT) AS net_quantity,
  CAST(SUM(quantity * price) AS DECIMAL(38,3)) AS net_revenue
FROM sales
WHERE CAST(t AS DATE) BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
GROUP BY ALL
"""

CUSTOMERS_FROM_LAKE = """
SELECT sale_date, customer_id, country,
  CAST(COUNT(DISTINCT invoice_no) AS BIGINT) AS orders,
  CAST(SUM(order_lines) AS BIGINT) AS order_lines,
  CAST(SUM(net_quantity) AS BIGINT) AS net_quantity,
  CAST(SUM(net_revenue) AS DECIMAL(38,3)) AS net_revenue
FROM read_parquet($glob, hive_partitioning = true)
GROUP BY ALL
"""

FROM_LAKE = """
SELECT sale_date, country, stock_code,
  CAST(SUM(units_sold) AS BIGINT) AS units_sold,
  CAST(SUM(units_returned) AS BIGINT) AS units_returned,
  CAST(SUM(net_quantity) AS BIGINT) AS net_quantity,
  CAST(SUM(gross_revenue) AS DECIMAL(38,3)) AS gross_revenue,
  CAST(SUM(refunds) AS DECIMAL(38,3)) AS refunds,
  CAST(SUM(net_revenue) AS DECIMAL(38,3)) AS net_revenue,
  CAST(SUM(order_lines) AS BIGINT) AS order_lines
FROM read_parquet($glob, hive_partitioning = true)
GROUP BY ALL
"""


def connect():
    return duckdb.connect()


def reference_totals(con, path, delim=",", encoding="utf-8"):
    return con.execute(REFERENCE_FROM_CSV, {"path": str(path), "delim": delim, "encoding": encoding}).fetchall()


def reference_customers(con, path, delim=",", encoding="utf-8"):
    return con.execute(CUSTOMERS_FROM_CSV, {"path": str(path), "delim": delim, "encoding": encoding}).fetchall()


def reference_customer_totals(con, path, start, end, delim=",", encoding="utf-8"):
    """{(customer_id, country): (orders, order_lines, net_quantity, net_revenue)}"""
    rows = con.execute(
        CUSTOMER_TOTALS_FROM_CSV,
        {"path": str(path), "delim": delim, "encoding": encoding, "start": start, "end": end},
    ).fetchall()
    return {row[:2]: row[2:] for row in rows}


def lake_customers(con, lake):
    return con.execute(CUSTOMERS_FROM_LAKE, {"glob": f"{lake}/customer_sales/*/*/*/*.parquet"}).fetchall()


def lake_totals(con, lake):
    return con.execute(FROM_LAKE, {"glob": f"{lake}/daily_sales/*/*/*/*.parquet"}).fetchall()


def assert_same_totals(expected, actual):
    expected_map = {row[:3]: row[3:] for row in expected}
    actual_map = {row[:3]: row[3:] for row in actual}
    assert len(expected_map) == len(expected), "reference keys are unique"
    assert len(actual_map) == len(actual), "lake keys are unique after summing"
    missing = sorted(set(expected_map) - set(actual_map))[:5]
    extra = sorted(set(actual_map) - set(expected_map))[:5]
    assert not missing and not extra, f"keys missing from lake {missing}, unexpected in lake {extra}"
    differing = [(k, expected_map[k], actual_map[k]) for k in expected_map if expected_map[k] != actual_map[k]]
    assert not differing, f"{len(differing)} keys differ, e.g. {differing[:3]}"
    assert expected_map, "the comparison covered some keys"

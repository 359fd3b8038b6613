"""Checks, with DuckDB, that two lakes hold the same data: the same events, and the same daily
sums per (sale date, country, product) however they are spread over files. `make bench` runs it
on the project's lake and the Python baseline's before it prints any ratio: a fast wrong answer
is not a result.

    python bench/same_sums.py LAKE_A LAKE_B

Exits 1, naming the first differences, when they differ.
"""

import sys

import duckdb

SUMS = ["units_sold", "units_returned", "net_quantity", "gross_revenue", "refunds", "net_revenue", "order_lines"]


def daily(lake):
    sums = ", ".join(f"sum({c}) AS {c}" for c in SUMS)
    return (
        f"SELECT sale_date, country, stock_code, {sums} "
        f"FROM read_parquet('{lake}/daily_sales/**/*.parquet', hive_partitioning = false, union_by_name = true) "
        "GROUP BY ALL"
    )


def events(lake):
    return f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{lake}/sales_events/**/*.parquet', hive_partitioning = false)"


def main():
    a, b = sys.argv[1], sys.argv[2]
    db = duckdb.connect()
    counts = [db.execute(events(lake)).fetchone() for lake in (a, b)]
    cells = db.execute(f"SELECT count(*) FROM ({daily(a)})").fetchone()[0]
    differ = db.execute(
        f"(({daily(a)}) EXCEPT ({daily(b)})) UNION ALL (({daily(b)}) EXCEPT ({daily(a)})) ORDER BY ALL LIMIT 5"
    ).fetchall()
    if counts[0] != counts[1] or differ or counts[0][0] != counts[0][1] or cells == 0:
        print(f"the lakes differ: events (rows, ids) {counts[0]} and {counts[1]}; first differing sums: {differ}")
        sys.exit(1)
    print(f"same data: {counts[0][0]} events, {cells} daily cells equal (DuckDB)")


if __name__ == "__main__":
    main()

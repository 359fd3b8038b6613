"""The same job in Python, as a data engineer would write it with pandas and pyarrow.

What `make bench` measures the project against: CSV rows -> JSON events with UUID v5 ids ->
batches of 10,000 -> decode, dedupe by id, aggregate daily sales per country and product in
exact decimals -> year/month/day Parquet (`sales_events` and `daily_sales`). The rules are the
producer's (DESIGN.md, "Input"): blank rows skipped, rows without an invoice, product or country,
with an unreadable number or date, a negative price or more than three decimal places rejected.

    python bench/baseline.py --input sales.csv --lake out/ [--batch-size 10000]

It prints one JSON line: rows read, events, rejected, seconds.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from decimal import Decimal, InvalidOperation

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The project's event id namespace (crates/sales-stream/src/event.rs): the same ids.
NAMESPACE = uuid.UUID(int=0x6F1C2D3E8A4B4C5D9E6F7A8B9C0D1E2F)
COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
MISSING = {"na", "n/a", "nan", "null", "none"}


def source_id(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{os.path.basename(path)}#{digest.hexdigest()}"


def customer(text):
    text = text.strip()
    if not text or text.lower() in MISSING:
        return None
    whole, dot, fraction = text.partition(".")
    if dot and whole.isdigit() and set(fraction) <= {"0"}:
        return whole
    return text


def price(text):
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value.normalize().as_tuple().exponent < -3:
        return None
    return value


def produce(path):
    """CSV -> JSON events, as a Python producer would send them."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    rows_read = len(frame)
    blank = (frame[COLUMNS].apply(lambda c: c.str.strip()) == "").all(axis=1)
    frame = frame[~blank]
    frame["line"] = frame.index + 2  # the header is line 1
    times = pd.to_datetime(frame["InvoiceDate"].str.strip(), format="%m/%d/%Y %H:%M", errors="coerce")
    quantities = pd.to_numeric(frame["Quantity"].str.strip(), errors="coerce")
    prices = frame["UnitPrice"].map(price)
    valid = (
        times.notna()
        & quantities.notna()
        & prices.notna()
        & (frame["InvoiceNo"].str.strip() != "")
        & (frame["StockCode"].str.strip() != "")
        & (frame["Country"].str.strip() != "")
    )
    rejected = int((~valid).sum())
    frame, times, quantities, prices = frame[valid], times[valid], quantities[valid], prices[valid]
    sid = source_id(path)
    name = os.path.basename(path)
    events = []
    for row, when, quantity, unit_price in zip(
        frame.itertuples(index=False), times, quantities, prices
    ):
        description = row.Description.strip()
        events.append(
            json.dumps(
                {
                    "event_id": str(uuid.uuid5(NAMESPACE, f"{sid}:{row.line}")),
                    "event_time": when.strftime("%Y-%m-%dT%H:%M:%S"),
                    "invoice_no": row.InvoiceNo.strip(),
                    "stock_code": row.StockCode.strip(),
                    "description": description or None,
                    "quantity": int(quantity),
                    "unit_price": str(unit_price),
                    "customer_id": customer(row.CustomerID),
                    "country": row.Country.strip(),
                    "source": f"{name}:{row.line}",
                }
            )
        )
    return rows_read, events, rejected


def write_partitions(table, lake, name, batch_number):
    dates = pc.unique(table["sale_date"]).to_pylist()
    for day in dates:
        part = table.filter(pc.equal(table["sale_date"], pa.scalar(day, pa.date32())))
        folder = os.path.join(lake, name, f"year={day.year:04d}", f"month={day.month:02d}", f"day={day.day:02d}")
        os.makedirs(folder, exist_ok=True)
        pq.write_table(part, os.path.join(folder, f"batch-{batch_number:06d}.parquet"), compression="zstd")


def consume(batch, seen, lake, batch_number):
    """One batch of JSON events -> deduplicated events and daily aggregates, as Parquet."""
    frame = pd.DataFrame.from_records([json.loads(e) for e in batch])
    frame = frame[~frame["event_id"].isin(seen)].drop_duplicates("event_id")
    seen.update(frame["event_id"])
    if frame.empty:
        return
    frame["event_time"] = pd.to_datetime(frame["event_time"])
    frame["sale_date"] = frame["event_time"].dt.date
    events = pa.Table.from_pandas(frame, preserve_index=False)
    unit_price = pc.cast(events["unit_price"], pa.decimal128(18, 3))
    quantity = events["quantity"]
    amount = pc.multiply(unit_price, pc.cast(quantity, pa.decimal128(19, 0)))
    zero_money = pa.scalar(Decimal(0), amount.type)
    zero = pa.scalar(0, pa.int64())
    positive, negative = pc.greater(quantity, 0), pc.less(quantity, 0)
    events = events.set_column(events.schema.get_field_index("unit_price"), "unit_price", unit_price)
    write_partitions(events, lake, "sales_events", batch_number)
    lines = pa.table(
        {
            "sale_date": events["sale_date"],
            "country": events["country"],
            "stock_code": events["stock_code"],
            "units_sold": pc.if_else(positive, quantity, zero),
            "units_returned": pc.negate(pc.if_else(negative, quantity, zero)),
            "net_quantity": quantity,
            "gross_revenue": pc.if_else(positive, amount, zero_money),
            "refunds": pc.negate(pc.if_else(negative, amount, zero_money)),
            "net_revenue": amount,
        }
    )
    sums = ["units_sold", "units_returned", "net_quantity", "gross_revenue", "refunds", "net_revenue"]
    daily = lines.group_by(["sale_date", "country", "stock_code"]).aggregate(
        [(c, "sum") for c in sums] + [("net_quantity", "count")]
    )
    daily = daily.rename_columns([c.removesuffix("_sum") for c in daily.column_names])
    daily = daily.rename_columns(["order_lines" if c == "net_quantity_count" else c for c in daily.column_names])
    write_partitions(daily, lake, "daily_sales", batch_number)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    started = time.perf_counter()
    rows_read, events, rejected = produce(args.input)
    seen = set()
    for number, start in enumerate(range(0, len(events), args.batch_size)):
        consume(events[start : start + args.batch_size], seen, args.lake, number)
    json.dump(
        {
            "rows_read": rows_read,
            "events": len(events),
            "rejected": rejected,
            "seconds": time.perf_counter() - started,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()

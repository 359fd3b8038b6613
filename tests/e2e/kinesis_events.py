"""Lambda Kinesis events, shaped as the Kinesis event source mapping delivers them (base64 data,
56-digit sequence numbers, `shardId-…:sequence` event ids, the stream's ARN), and the totals they
must produce, computed here with Python's Decimal, independently of our Rust code.

`python kinesis_events.py` rewrites the fixtures in tests/fixtures/kinesis; a test checks that
they match what this file generates.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kinesis"
REGION = "eu-west-1"
STREAM = "sales-events"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/{STREAM}"
SHARD = "shardId-000000000000"
# Kinesis sequence numbers are 56-digit decimals; these count up from a real one.
FIRST_SEQUENCE = 49_654_950_219_358_371_617_089_735_104_187_420_431_497_390_618_447_216_642
EVENT_ID_NAMESPACE = uuid.UUID(int=0x6F1C2D3E8A4B4C5D9E6F7A8B9C0D1E2F)
KPL_MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])


def sales_event(source: str, line: int, *, when: str, invoice: str, stock: str, description: str | None,
                quantity: int, price: str, customer: str | None, country: str) -> dict:
    """One event in the wire format of DESIGN.md."""
    return {
        "event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}:{line}")),
        "event_time": when,
        "invoice_no": invoice,
        "stock_code": stock,
        "description": description,
        "quantity": quantity,
        "unit_price": price,
        "customer_id": customer,
        "country": country,
        "source": f"{source}:{line}",
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def kpl_record(user_records: list[tuple[str, bytes]]) -> bytes:
    """A KPL aggregated record, from the published format: magic, protobuf body, MD5 trailer."""
    keys: list[str] = []
    body = b""
    for key, _ in user_records:
        if key not in keys:
            keys.append(key)
    for key in keys:
        body += _field(1, key.encode())
    for key, data in user_records:
        body += _field(3, _field(1, keys.index(key)) + _field(3, data))
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def event_record(sequence: int, partition_key: str, data: bytes, arrival: float) -> dict:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": str(sequence),
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/sales-lake-consumer",
        "awsRegion": REGION,
        "eventSourceARN": STREAM_ARN,
    }


def encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def small_batch() -> tuple[dict, list[dict], dict]:
    """A batch with plain records, an aggregated record, a malformed record and duplicates.

    Returns the Lambda event, the events that must be accepted, and the expected counts."""
    source = "online-retail.csv"
    rows = [
        dict(when="2010-12-01T08:26:00", invoice="536365", stock="85123A",
             description="WHITE HANGING HEART T-LIGHT HOLDER", quantity=6, price="2.55",
             customer="17850", country="United Kingdom"),
        dict(when="2010-12-01T08:26:00", invoice="536365", stock="71053", description="WHITE METAL LANTERN",
             quantity=6, price="3.39", customer="17850", country="United Kingdom"),
        dict(when="2010-12-01T08:28:00", invoice="536366", stock="22633", description="HAND WARMER UNION JACK",
             quantity=6, price="1.85", customer="17850", country="United Kingdom"),
        dict(when="2010-12-01T09:41:00", invoice="C536379", stock="D", description="Discount",
             quantity=-1, price="27.50", customer="14527", country="United Kingdom"),
        dict(when="2010-12-02T10:03:00", invoice="536520", stock="85123A", description=None,
             quantity=12, price="2.55", customer=None, country="France"),
        dict(when="2010-12-02T10:03:00", invoice="536520", stock="85123A", description="WHITE HANGING HEART T-LIGHT HOLDER",
             quantity=-2, price="2.55", customer=None, country="France"),
        dict(when="2011-01-09T15:50:00", invoice="540001", stock="22423", description="REGENCY CAKESTAND 3 TIER",
             quantity=3, price="12.75", customer="12347", country="Iceland"),
    ]
    events = [sales_event(source, i + 2, **row) for i, row in enumerate(rows)]
    arrival = 1_291_192_000.125
    records = []
    sequence = FIRST_SEQUENCE
    # Plain records: one event each, partition key = event id.
    for event in events[:3]:
        records.append(event_record(sequence, event["event_id"], encode(event), arrival))
        sequence += 17
    # A producer re-sent the first event: same id, a later sequence number.
    records.append(event_record(sequence, events[0]["event_id"], encode(events[0]), arrival))
    sequence += 17
    # A record that is not an event at all.
    records.append(event_record(sequence, "not-an-event", b"\x00\x01 garbage, not JSON", arrival))
    sequence += 17
    # One aggregated record with the other four events, and again the second one.
    packed = [(e["event_id"], encode(e)) for e in events[3:]] + [(events[1]["event_id"], encode(events[1]))]
    records.append(event_record(sequence, events[3]["event_id"], kpl_record(packed), arrival))
    counts = {"records": 6, "received": 10, "accepted": 7, "duplicates": 2, "quarantined": 1}
    return {"Records": records}, events, counts


def daily_totals(events: list[dict]) -> dict:
    """DESIGN.md's daily_sales columns, keyed by "date|country|stock_code", as strings."""
    totals: dict = defaultdict(lambda: defaultdict(Decimal))
    for e in events:
        key = f"{e['event_time'][:10]}|{e['country']}|{e['stock_code']}"
        quantity, value = e["quantity"], e["quantity"] * Decimal(e["unit_price"])
        t = totals[key]
        t["units_sold"] += max(quantity, 0)
        t["units_returned"] += max(-quantity, 0)
        t["net_quantity"] += quantity
        t["gross_revenue"] += value if quantity > 0 else 0
        t["refunds"] += -value if quantity < 0 else 0
        t["net_revenue"] += value
        t["order_lines"] += 1
    return {key: {column: str(value.quantize(Decimal("0.001")) if "revenue" in column or column == "refunds" else value)
                  for column, value in t.items()}
            for key, t in sorted(totals.items())}


def large_batch(count: int, first_line: int = 2, sequence: int = FIRST_SEQUENCE) -> dict:
    """`count` plain records of distinct events, as one Lambda invocation carries at most."""
    records = []
    countries = ["United Kingdom", "France", "Germany", "EIRE", "Spain"]
    for i in range(count):
        line = first_line + i
        event = sales_event("large.csv", line, when=f"2011-0{1 + i % 9}-1{i % 10}T12:00:00",
                            invoice=str(550000 + i // 8), stock=f"2{i % 400:04d}", description=f"PRODUCT {i % 400}",
                            quantity=1 + i % 24, price=f"{1 + i % 13}.{i % 100:02d}", customer=str(12000 + i % 900),
                            country=countries[i % len(countries)])
        records.append(event_record(sequence + 17 * i, event["event_id"], encode(event), 1_300_000_000.5))
    return {"Records": records}


def fixtures() -> dict[str, str]:
    """File name → content of every fixture."""
    event, accepted, counts = small_batch()
    expected = {"counts": counts, "stream": STREAM, "shard": SHARD,
                "first_sequence_number": event["Records"][0]["kinesis"]["sequenceNumber"],
                "daily_sales": daily_totals(accepted)}
    return {
        "batch.json": json.dumps(event, indent=2) + "\n",
        "batch.expected.json": json.dumps(expected, indent=2) + "\n",
    }


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, text in fixtures().items():
        (FIXTURES / name).write_text(text)
        print(f"wrote {FIXTURES / name}", file=sys.stderr)

"""Reads a Kinesis stream back with boto3 and unpacks its records, independently of our Rust
code: the KPL aggregated-record format is decoded here from its published description
(awslabs/amazon-kinesis-producer, aggregation-format.md), zstd frames with `zstandard`, and the
compact form from its description in DESIGN.md and `crates/sales-stream/src/compact.rs`, ids
derived with Python's own `uuid.uuid5`."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import time
import uuid
from dataclasses import dataclass

import zstandard

KPL_MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])
ZSTD_MAGIC = bytes([0x28, 0xB5, 0x2F, 0xFD])
COMPACT_MAGIC = bytes([0xFB, 0x53, 0x4C, 0x01])
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    """(field number, value) pairs of a protobuf message; values are ints or bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, value


def unpack_compact(data: bytes) -> list[dict]:
    """The events of a compact record, as the JSON events they stand for."""
    body = zstandard.ZstdDecompressor().decompress(data[4:], max_output_size=16 << 20)
    at = 0

    def varint():
        nonlocal at
        value, at = _varint(body, at)
        return value

    def signed():
        value = varint()
        return (value >> 1) ^ -(value & 1)

    def text():
        nonlocal at
        length = varint()
        at += length
        return body[at - length:at].decode()

    def dictionary(n, parts=1):
        values = [tuple(text() for _ in range(parts)) for _ in range(varint())]
        return [values[i - 1] if i else None for i in (varint() for _ in range(n))]

    def deltas(n):
        out, last = [], 0
        for _ in range(n):
            last += signed()
            out.append(last)
        return out

    n = varint()
    sources = dictionary(n, parts=2)
    lines, seconds = deltas(n), deltas(n)
    nanos = [varint() for _ in range(n)]
    invoice, stock, description = dictionary(n), dictionary(n), dictionary(n)
    quantity = [signed() for _ in range(n)]
    units = [signed() for _ in range(n)]
    scales = [varint() for _ in range(n)]
    customer, country = dictionary(n), dictionary(n)
    assert at == len(body), "no bytes after the last column"
    epoch = datetime.datetime(1970, 1, 1)
    events = []
    for i in range(n):
        (name, source_id), line = sources[i], lines[i]
        assert nanos[i] == 0, "the samples' times are whole seconds"
        time_ = epoch + datetime.timedelta(seconds=seconds[i])
        price = decimal.Decimal(units[i]).scaleb(-scales[i])
        first = lambda column: column[i][0] if column[i] else None  # noqa: E731
        events.append({
            "event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source_id}:{line}")),
            "event_time": time_.strftime("%Y-%m-%dT%H:%M:%S"),
            "invoice_no": first(invoice), "stock_code": first(stock),
            "description": first(description), "quantity": quantity[i],
            "unit_price": f"{price:f}", "customer_id": first(customer),
            "country": first(country), "source": f"{name}:{line}",
        })
    return events


def unpack(data: bytes) -> list[tuple[str | None, bytes]]:
    """The (partition key, data) of each event a record carries; None for a plain record."""
    if data[:4] == COMPACT_MAGIC:
        # Events of a compact record have no partition keys of their own: their ids stand in.
        return [(e["event_id"], json.dumps(e).encode()) for e in unpack_compact(data)]
    if data[:4] == ZSTD_MAGIC:
        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=16 << 20)
        assert data[:4] == KPL_MAGIC, "a compressed record holds an aggregated record"
    if data[:4] != KPL_MAGIC:
        return [(None, data)]
    body, digest = data[4:-16], data[-16:]
    assert hashlib.md5(body).digest() == digest, "MD5 trailer matches the body"
    keys, records = [], []
    for number, value in _fields(body):
        if number == 1:
            keys.append(value.decode())
        elif number == 3:
            records.append(value)
    out = []
    for record in records:
        fields = dict(_fields(record))
        out.append((keys[fields[1]], fields[3]))
    return out


@dataclass
class StreamEvent:
    shard_id: str
    sequence_number: int
    record_key: str
    event_key: str
    event: dict


def read_stream(kinesis, stream: str) -> tuple[list[StreamEvent], int]:
    """Every event in the stream, and the number of Kinesis records that carried them. Checks
    that sequence numbers rise within each shard (as numbers: they are 56 digits long)."""
    events, records = [], 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        last = -1
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                sequence = int(record["SequenceNumber"])
                assert sequence > last, f"{shard_id}: {sequence} after {last}"
                last = sequence
                records += 1
                for key, data in unpack(record["Data"]):
                    events.append(StreamEvent(shard_id, sequence, record["PartitionKey"],
                                              key if key is not None else record["PartitionKey"],
                                              json.loads(data)))
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return events, records


def create_stream(kinesis, name: str, shards: int, timeout: float = 30.0) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_active(kinesis, name, timeout)


def wait_active(kinesis, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.1)
    raise AssertionError(f"stream {name} not ACTIVE after {timeout} s")

"""Nothing lost, under the faults the other suites do not make (totals always by DuckDB against
the source CSV):

- a commit whose answer is lost (a proxy in front of moto S3 applies every third conditional PUT
  and drops its connection): the poller drains, and a later run commits;
- a failed write while the batch's other writes are slowed: no orphan after the retry;
- pairs of overlapping compactions, some killed, while `consumer poll` commits batches of the same
  days, then a clean compaction: exact totals, one file per table and day;
- poison put straight into the Kinesis emulator: a price the column cannot hold, two revenues
  summing past decimal(18,3), an aggregated record with no user records;
- a stray quote: one row rejected, every later row counted;
- `consumer replay` of the whole stream (and of a failures-queue message): no total changes;
- a stream re-created under the same name: a clear error, nothing written.
"""

import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
import uuid

from conftest import BIN, download_lake, producer_env, run
from fault_proxy import S3FaultProxy
from kinesis_reader import create_stream, wait_active
from reference import (
    assert_same_totals,
    connect,
    lake_customers,
    lake_totals,
    reference_customers,
    reference_totals,
)
from test_exactly_once import files_per_partition, status
from test_kinesis import generated, produce_to_kinesis, unique
from test_poll import poll, summed


def port_of(url):
    return int(url.rsplit(":", 1)[1])


def lake_rows(con, lake):
    return con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($g)",
                       {"g": f"{lake}/sales_events/*/*/*/*.parquet"}).fetchone()


def test_a_commit_whose_answer_was_lost_is_read_back_and_the_shard_goes_on(
        kinesis, kinesalite, moto, s3, bucket, work):
    first, second = generated(work, 3_000, seed=31), generated(work, 2_000, seed=32)
    name = unique("lost")
    create_stream(kinesis, name, 2)
    # Plain records, in batches of 200: many commits, so many lost answers.
    produce_to_kinesis(first, name, kinesalite, work, "--source-id", "first.csv")
    with S3FaultProxy(port_of(moto), lose_every=3) as proxy:
        consumed, result = poll(name, f"s3://{bucket}/lake", kinesalite, proxy.url, work, "--batch-size", 200)
        assert proxy.counts["lose"] >= 3, proxy.counts
        assert "reading it back shows it was applied" in result.stderr
        con = connect()
        download_lake(s3, bucket, "lake/", work / "lake")
        assert_same_totals(reference_totals(con, first), lake_totals(con, work / "lake"))
        # A later run picks every shard up where it is, and commits.
        produce_to_kinesis(second, name, kinesalite, work, "--aggregate", "--source-id", "second.csv")
        later, _ = poll(name, f"s3://{bucket}/lake", kinesalite, proxy.url, work, "--batch-size", 200)
        assert later["counts"]["accepted"] > 0 and later["batches"] > 0
    download_lake(s3, bucket, "lake/", work / "lake-later")
    assert_same_totals(summed(reference_totals(con, first), reference_totals(con, second)),
                       lake_totals(con, work / "lake-later"))
    rows, distinct = lake_rows(con, work / "lake-later")
    assert rows == distinct == consumed["counts"]["accepted"] + later["counts"]["accepted"]


def test_a_failed_write_leaves_no_orphan_when_the_batch_is_retried(kinesis, kinesalite, moto, s3, bucket, work):
    csv = generated(work, 2_500, seed=33)
    name = unique("orphan")
    create_stream(kinesis, name, 1)
    produce_to_kinesis(csv, name, kinesalite, work)
    slow_s = 4.0
    with S3FaultProxy(port_of(moto), fail_one_write=True, slow_s=slow_s) as proxy:
        failed, result = poll(name, f"s3://{bucket}/lake", kinesalite, proxy.url, work, check=False)
        assert result.returncode == 1 and "panicked" not in result.stderr, result.stderr
        assert proxy.counts["fail"] >= 1 and proxy.counts["slow"] >= 2, proxy.counts
        # The retry starts at once: a write of the failed attempt still in flight would land
        # after the retry removed the attempt's files, and count twice.
        consumed, _ = poll(name, f"s3://{bucket}/lake", kinesalite, moto, work)
        time.sleep(slow_s + 1)
    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    assert_same_totals(reference_totals(con, csv), lake_totals(con, work / "lake"))
    rows, distinct = lake_rows(con, work / "lake")
    assert rows == distinct == consumed["counts"]["accepted"]


def test_overlapping_compactions_killed_at_random_beside_a_live_poller_lose_nothing(work):
    csv = generated(work, 24_000, seed=34)
    stream, lake = work / "stream", work / "lake"
    run(BIN / "producer", "--input", csv, "--stream", f"file://{stream}", "--shards", 3,
        "--rejects", work / "rejects.csv")
    con = connect()
    days = [str(r[0]) for r in con.execute(
        "SELECT DISTINCT CAST(strptime(InvoiceDate, '%m/%d/%Y %H:%M') AS DATE) AS d "
        "FROM read_csv($p, all_varchar = true) WHERE regexp_matches(InvoiceDate, '^\\d+/\\d+/\\d{4} ') "
        "ORDER BY d", {"p": str(csv)}).fetchall()]
    assert len(days) >= 6
    rng = random.Random(35)
    log = open(work / "compactions.log", "w")
    poller = subprocess.Popen([str(BIN / "consumer"), "poll", "--stream", f"file://{stream}", "--lake",
                               f"file://{lake}", "--until-drained", "--batch-size", "120"],
                              stdout=log, stderr=log)
    compact = [str(BIN / "consumer"), "compact", "--lake", f"file://{lake}", "--from", days[0], "--to", days[5]]
    rounds = kills = superseded = 0
    while poller.poll() is None or rounds < 6:
        pair = [subprocess.Popen(compact, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        if rng.random() < 0.6:
            time.sleep(rng.uniform(0.02, 0.4))
            victim = rng.choice(pair)
            victim.send_signal(signal.SIGKILL)
            kills += 1
        for process in pair:
            out, err = process.communicate(timeout=300)
            assert process.returncode in (0, -signal.SIGKILL), err
            superseded += out.count("took this day over")
        rounds += 1
    assert poller.wait() == 0, (work / "compactions.log").read_text()[-3000:]
    log.close()
    print(f"{rounds} rounds of two compactions, {kills} killed, {superseded} days left to the other")
    assert kills >= 2 and rounds >= 6
    # A clean compaction of every day, then the lake is exact and one file per table and day.
    out = run(BIN / "consumer", "compact", "--lake", f"file://{lake}", "--from", days[0], "--to", days[-1]).stdout
    assert "took this day over" not in out
    assert_same_totals(reference_totals(con, csv), lake_totals(con, lake))
    assert_same_totals(reference_customers(con, csv), lake_customers(con, lake))
    report = json.loads(status(f"file://{lake}", "--json"))
    rows, distinct = lake_rows(con, lake)
    assert rows == distinct == report["totals"]["accepted"]
    assert set(files_per_partition(lake).values()) == {1}
    again = run(BIN / "consumer", "compact", "--lake", f"file://{lake}", "--touched").stdout
    assert "files ->" not in again, again


def event(line, *, quantity, price, day="2011-12-05", country="Poisonland", code="POISON"):
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"poison:{line}"))
    return event_id, json.dumps({
        "event_id": event_id, "event_time": f"{day}T10:00:00", "invoice_no": f"P{line}", "stock_code": code,
        "description": "poison", "quantity": quantity, "unit_price": price, "customer_id": None,
        "country": country, "source": f"poison.csv:{line}"}).encode()


def test_poison_in_the_stream_never_stops_a_shard(kinesis, kinesalite, moto, s3, bucket, work):
    csv = generated(work, 1_500, seed=36)
    name = unique("poison")
    create_stream(kinesis, name, 1)
    sent, _ = produce_to_kinesis(csv, name, kinesalite, work, "--aggregate")
    # A price no decimal(18,3) column holds, on a line whose amount is 0.
    too_dear = event(1, quantity=0, price="1000000000000000")
    # Two valid lines whose revenues (6e14 each) sum past decimal(18,3).
    big = [event(n, quantity=1000, price="600000000000") for n in (2, 3)]
    # A KPL aggregated record with no user records.
    empty_kpl = b"\xf3\x89\x9a\xc2" + hashlib.md5(b"").digest()
    records = [(too_dear[0], too_dear[1]), *big, ("empty", empty_kpl)]
    kinesis.put_records(StreamName=name, Records=[{"Data": data, "PartitionKey": key} for key, data in records])
    # And more valid events after the poison, from the same file, re-sent: all duplicates.
    produce_to_kinesis(csv, name, kinesalite, work)
    consumed, result = poll(name, f"s3://{bucket}/lake", kinesalite, moto, work, "--batch-size", 300)
    counts = consumed["counts"]
    assert counts["accepted"] == sent["events_sent"] + 2
    assert counts["quarantined"] == 2
    assert counts["duplicates"] == sent["events_sent"]

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    poison_totals = [r for r in lake_totals(con, work / "lake") if r[1] == "Poisonland"]
    assert [(str(r[0]), r[2], r[5], str(r[8]), r[9]) for r in poison_totals] == [
        ("2011-12-05", "POISON", 2000, "1200000000000000.000", 2)]
    others = [r for r in lake_totals(con, work / "lake") if r[1] != "Poisonland"]
    assert_same_totals(reference_totals(con, csv), others)
    reasons = [json.loads(line)["reason"] for path in (work / "lake" / "quarantine").rglob("*.jsonl")
               for line in path.read_text().splitlines()]
    assert sorted(reasons) == sorted([
        "invalid event: unit price 1000000000000000 is beyond 999999999999999.999",
        "aggregated record holds no user records"]), reasons


def test_a_stray_quote_rejects_its_row_and_every_later_row_counts(work):
    rng = random.Random(37)
    header = "InvoiceNo;StockCode;Description;Quantity;InvoiceDate;UnitPrice;CustomerID;Country"
    rows = [f"{536365 + i};{rng.choice(['85123A', '22633', 'POST'])};ITEM {i % 17};{rng.randint(-3, 24)};"
            f"12/{1 + i % 9}/2010 {8 + i % 10}:{i % 60:02d};{rng.randint(0, 999) / 100};{17850 + i % 40};"
            f"{rng.choice(['France', 'United Kingdom', 'EIRE'])}" for i in range(3_066)]
    stray = 9  # row 10, line 11
    rows[stray] = '"' + rows[stray]
    source, expected = work / "stray.csv", work / "expected.csv"
    source.write_text("\n".join([header, *rows]) + "\n")
    expected.write_text("\n".join([header, *rows[:stray], *rows[stray + 1:]]) + "\n")
    stream, lake = work / "stream", work / "lake"
    run(BIN / "producer", "--input", source, "--stream", f"file://{stream}", "--rejects", work / "rejects.csv",
        "--summary-json", work / "sent.json")
    sent = json.loads((work / "sent.json").read_text())
    assert (sent["rejected"], sent["events_sent"]) == (1, len(rows) - 1), sent
    rejects = (work / "rejects.csv").read_text()
    assert "11," in rejects and "unterminated quote" in rejects, rejects
    run(BIN / "consumer", "poll", "--stream", f"file://{stream}", "--lake", f"file://{lake}", "--until-drained")
    con = connect()
    assert_same_totals(reference_totals(con, expected, delim=";"), lake_totals(con, lake))


def test_replaying_the_whole_stream_or_a_given_up_batch_changes_no_total(
        kinesis, kinesalite, moto, s3, bucket, work):
    csv = generated(work, 3_500, seed=38)
    name = unique("replay")
    create_stream(kinesis, name, 2)
    produce_to_kinesis(csv, name, kinesalite, work, "--aggregate")
    poll(name, f"s3://{bucket}/lake", kinesalite, moto, work, "--batch-size", 400)
    env = producer_env(kinesalite, AWS_ENDPOINT_URL_S3=moto)
    replay = [str(BIN / "consumer"), "replay", "--stream", f"kinesis://{name}", "--lake", f"s3://{bucket}/lake"]
    whole = subprocess.run([*replay, "--from-timestamp", "1970-01-01T00:00:00Z", "--summary-json",
                            str(work / "replay.json")], capture_output=True, text=True, env=env, timeout=300)
    assert whole.returncode == 0, whole.stderr
    summary = json.loads((work / "replay.json").read_text())
    assert summary["shards"] == 2 and summary["counts"]["accepted"] == 0
    assert summary["counts"]["duplicates"] == summary["counts"]["received"] > 0
    # The message the failures queue would hold for a batch of shard 0, as a file.
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=50)["Records"]
    message = {"requestContext": {"condition": "RetryAttemptsExhausted"}, "version": "1.0",
               "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": records[0]["SequenceNumber"],
                                    "endSequenceNumber": records[-1]["SequenceNumber"], "batchSize": len(records),
                                    "streamArn": f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"}}
    (work / "failure.json").write_text(json.dumps(message))
    given_up = subprocess.run([*replay, "--failure-message", str(work / "failure.json")],
                              capture_output=True, text=True, env=env, timeout=300)
    assert given_up.returncode == 0, given_up.stderr
    assert f"1 shards replayed, {len(records)} records" in given_up.stdout, given_up.stdout
    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    assert_same_totals(reference_totals(con, csv), lake_totals(con, work / "lake"))
    rows, distinct = lake_rows(con, work / "lake")
    assert rows == distinct


def test_a_stream_created_again_under_the_same_name_is_refused_and_nothing_is_written(
        kinesis, kinesalite, moto, s3, bucket, work):
    # An embedded stream: the directory removed and a new stream made at the same path.
    stream, lake = work / "stream", work / "lake"
    for rows, seed in ((800, 39), (900, 40)):
        run(BIN / "producer", "--input", generated(work, rows, seed=seed), "--stream", f"file://{stream}",
            "--rejects", work / "rejects.csv")
        result = subprocess.run([str(BIN / "consumer"), "poll", "--stream", f"file://{stream}", "--lake",
                                 f"file://{lake}", "--until-drained"], capture_output=True, text=True)
        if seed == 39:
            assert result.returncode == 0, result.stderr
            before = sorted(str(p) for p in lake.rglob("*") if p.is_file())
            shutil.rmtree(stream)
    assert result.returncode == 1
    assert "deleted and created again" in result.stderr and "_state/stream/" in result.stderr, result.stderr
    assert "panicked" not in result.stderr
    assert sorted(str(p) for p in lake.rglob("*") if p.is_file()) == before

    # A Kinesis stream deleted and created again: the same ARN, another creation time.
    name = unique("again")
    create_stream(kinesis, name, 1)
    produce_to_kinesis(generated(work, 700, seed=41), name, kinesalite, work)
    poll(name, f"s3://{bucket}/lake", kinesalite, moto, work)
    objects = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    kinesis.delete_stream(StreamName=name)
    deadline = time.monotonic() + 30
    while name in kinesis.list_streams()["StreamNames"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.1)  # creation times are in seconds
    create_stream(kinesis, name, 1)
    wait_active(kinesis, name)
    produce_to_kinesis(generated(work, 600, seed=42), name, kinesalite, work)
    _, result = poll(name, f"s3://{bucket}/lake", kinesalite, moto, work, check=False)
    assert result.returncode == 1 and "deleted and created again" in result.stderr, result.stderr
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == objects

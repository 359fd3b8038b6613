"""The producer against a real Kinesis emulator (kinesalite on 127.0.0.1), with and without a
fault-injecting proxy in between; the stream is read back with boto3 and unpacked by an
independent decoder (kinesis_reader.py)."""

import base64
import gzip
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from hashlib import md5

import pytest

from conftest import BIN, SAMPLES, producer_env, run
from fault_proxy import FaultProxy
from kinesis_reader import create_stream, read_stream

SAMPLE = SAMPLES / "allgaetan-aws-cloud/test.csv"  # 3,066 rows, no rejects, no blanks


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def produce_to_kinesis(csv, stream, endpoint, workdir, *extra, check=True, env=None):
    summary = workdir / f"{stream}-summary.json"
    result = subprocess.run(
        [str(BIN / "producer"), "--input", str(csv), "--stream", f"kinesis://{stream}",
         "--summary-json", str(summary), "--rejects", str(workdir / f"{stream}-rejects.csv"),
         *map(str, extra)],
        capture_output=True, text=True, env=env or producer_env(endpoint),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"producer failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return (json.loads(summary.read_text()) if summary.exists() else None), result


def generated(workdir, rows, seed=11):
    path = workdir / f"generated-{rows}.csv"
    run(BIN / "producer", "generate", "--rows", rows, "--seed", seed, "--output", path)
    return path


def shard_of(kinesis, stream):
    """shard id -> (start, end) hash key range."""
    return {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in kinesis.list_shards(StreamName=stream)["Shards"]}


def hash_key(partition_key):
    return int.from_bytes(md5(partition_key.encode()).digest(), "big")


def assert_placed_by_partition_key(kinesis, stream, events):
    ranges = shard_of(kinesis, stream)
    for e in events:
        start, end = ranges[e.shard_id]
        assert start <= hash_key(e.event_key) <= end, f"{e.event_key} is not on {e.shard_id}"
        assert e.event_key == e.event["event_id"], "partition key = event id"


@pytest.mark.parametrize("mode", [[], ["--aggregate"], ["--aggregate", "--compression", "zstd"],
                                  ["--aggregate", "--compression", "compact"]],
                         ids=["plain", "aggregated-kpl", "aggregated-zstd", "compact"])
def test_a_real_sample_arrives_whole_and_on_the_right_shards(kinesis, kinesalite, work, mode):
    stream = unique("sample")
    create_stream(kinesis, stream, 3)
    summary, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work, *mode)
    assert summary["rows_read"] == summary["events_sent"] == 3066
    assert summary["retries"] == 0 and summary["resume_after"] == 3066

    events, records = read_stream(kinesis, stream)
    assert records == summary["records"]
    assert len(events) == 3066
    assert len({e.event["event_id"] for e in events}) == 3066
    assert_placed_by_partition_key(kinesis, stream, events)
    if mode:
        assert records < 3066 / 20, "aggregated records carry many events"


def test_an_aggregated_stream_is_read_back_by_aws_de_aggregation_library(kinesis, kinesalite, work):
    from aws_kinesis_agg.deaggregator import deaggregate_records

    stream = unique("kpl")
    create_stream(kinesis, stream, 2)
    summary, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work, "--aggregate")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        # As Lambda hands records to a Python function.
        records += [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                                 "sequenceNumber": r["SequenceNumber"],
                                 "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                                 "data": base64.b64encode(r["Data"]).decode()}} for r in page["Records"]]
    assert len(records) == summary["records"] < summary["events_sent"] / 20
    users = deaggregate_records(records)
    events = [json.loads(base64.b64decode(u["kinesis"]["data"])) for u in users]
    assert all(u["kinesis"]["aggregated"] for u in users)
    assert len(events) == summary["events_sent"] == 3066
    assert len({e["event_id"] for e in events}) == 3066
    assert all(u["kinesis"]["partitionKey"] == e["event_id"] for u, e in zip(users, events))


def test_plain_and_aggregated_runs_carry_the_same_events(kinesis, kinesalite, work):
    source = generated(work, 20_000)
    multisets = []
    for mode in ([], ["--aggregate"], ["--aggregate", "--compression", "zstd"],
                 ["--aggregate", "--compression", "compact"]):
        stream = unique("same")
        create_stream(kinesis, stream, 2)
        summary, _ = produce_to_kinesis(source, stream, kinesalite, work, *mode)
        events, _ = read_stream(kinesis, stream)
        assert len(events) == summary["events_sent"] > 19_000
        multisets.append(Counter(json.dumps(e.event, sort_keys=True) for e in events))
    assert multisets[0] == multisets[1] == multisets[2] == multisets[3], \
        "a compact event is the JSON event, id and source derived by an independent reader"


FEW_FAULTS = dict(throttle=0.1, error=0.05, drop_before=0.04, drop_after=0.04, partial=0.25)
# Aggregated runs make few requests (1 KiB aggregates, 500 per request): fault more of them.
MANY_FAULTS = dict(throttle=0.15, error=0.1, drop_before=0.1, drop_after=0.1, partial=0.3)


@pytest.mark.parametrize("mode, faults", [
    ([], FEW_FAULTS),
    (["--aggregate", "--aggregate-bytes", 1024], MANY_FAULTS),
], ids=["plain", "aggregated"])
def test_nothing_is_lost_through_throttling_partial_failures_and_dropped_connections(kinesis, kinesalite, work, mode, faults):
    source = generated(work, 100_000)
    stream = unique("faults")
    create_stream(kinesis, stream, 4)
    port = int(kinesalite.rsplit(":", 1)[1])
    with FaultProxy(port, seed=5, **faults) as proxy:
        summary, result = produce_to_kinesis(source, stream, proxy.url, work, *mode,
                                             "--max-attempts", 30, "--source-id", "faults.csv")
    # Every kind of fault happened, and the producer rode them out.
    assert all(proxy.counts[fault] > 0 for fault in proxy.rates), proxy.counts
    assert proxy.failed_entries > 0
    assert summary["retries"] > 0 and summary["records_resent"] > 0
    assert summary["rows_read"] == summary["events_sent"] + summary["rejected"] + summary["blank"]
    assert summary["resume_after"] == summary["rows_read"]

    events, _ = read_stream(kinesis, stream)
    ids = Counter(e.event["event_id"] for e in events)
    # Every event exactly once or more (a dropped answer or a rewritten one means the records
    # landed and were sent again), none missing, nothing else.
    assert len(ids) == summary["events_sent"]
    assert len(events) >= summary["events_sent"]
    expected = expected_event_ids(source, work, "faults.csv")
    assert set(ids) == expected
    assert_placed_by_partition_key(kinesis, stream, events)


def expected_event_ids(source, work, source_id):
    """The ids a generated file must yield, computed here: UUID v5 of `source_id:line` for each
    data line that is neither blank nor listed in the rejects file of a local run."""
    import csv as csvmod

    local = work / unique("local")
    run(BIN / "producer", "--input", source, "--stream", f"file://{local}", "--source-id", source_id,
        "--rejects", work / "local-rejects.csv")
    rejected = set()
    if (work / "local-rejects.csv").exists():
        with open(work / "local-rejects.csv", newline="") as f:
            rejected = {int(r["line"]) for r in csvmod.DictReader(f)}
    namespace = uuid.UUID("6f1c2d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f")
    ids = set()
    with open(source, newline="", encoding="utf-8") as f:
        reader = csvmod.reader(f)
        next(reader)
        for row in reader:
            line = reader.line_num  # line the record ends on; generated rows are one line each
            if line in rejected or not any(field.strip() for field in row):
                continue
            ids.add(str(uuid.uuid5(namespace, f"{source_id}:{line}")))
    return ids


def test_a_run_that_gives_up_says_where_to_resume_and_the_resumed_run_completes(kinesis, kinesalite, work):
    source = generated(work, 30_000, seed=2)
    stream = unique("resume")
    create_stream(kinesis, stream, 2)
    port = int(kinesalite.rsplit(":", 1)[1])
    # After 20 requests, every PutRecords is throttled: the run must stop and say how far it got.
    with FaultProxy(port, seed=1, throttle=0, error=0, drop_before=0, drop_after=0, partial=0,
                    blackout_after=20) as proxy:
        summary, result = produce_to_kinesis(source, stream, proxy.url, work, "--max-attempts", 3,
                                             "--source-id", "resume.csv", check=False)
    assert result.returncode != 0
    assert "panicked" not in result.stderr
    assert "gave up" in result.stderr and "ProvisionedThroughputExceededException" in result.stderr
    resume_after = int(result.stderr.split("--skip-rows ")[1].split()[0])
    assert 0 < resume_after < 30_000

    summary, _ = produce_to_kinesis(source, stream, kinesalite, work, "--skip-rows", resume_after,
                                    "--source-id", "resume.csv")
    assert summary["rows_skipped"] == resume_after
    assert summary["rows_skipped"] + summary["rows_read"] == 30_000
    events, _ = read_stream(kinesis, stream)
    assert {e.event["event_id"] for e in events} == expected_event_ids(source, work, "resume.csv")


def test_ctrl_c_lets_requests_settle_and_prints_the_resume_point(kinesis, kinesalite, work):
    source = generated(work, 30_000, seed=4)
    stream = unique("interrupt")
    create_stream(kinesis, stream, 2)
    process = subprocess.Popen(
        [str(BIN / "producer"), "--input", str(source), "--stream", f"kinesis://{stream}",
         "--rate", "5000", "--source-id", "ctrl-c.csv", "--rejects", str(work / "r.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=producer_env(kinesalite),
    )
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "panicked" not in stderr
    resume_after = int(stderr.split("--skip-rows ")[1].split()[0])
    assert 0 < resume_after < 30_000, stderr

    produce_to_kinesis(source, stream, kinesalite, work, "--skip-rows", resume_after, "--source-id", "ctrl-c.csv")
    events, _ = read_stream(kinesis, stream)
    assert {e.event["event_id"] for e in events} == expected_event_ids(source, work, "ctrl-c.csv")


def test_rate_limits_are_held(kinesis, kinesalite, work):
    stream = unique("rate")
    create_stream(kinesis, stream, 1)
    summary, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work, "--rate", 1000)
    # 3,066 rows at 1,000/s with one second of burst: at least two seconds.
    assert summary["elapsed_s"] >= 1.9, summary

    # One shard's limits with plain records: 1,000 records/s binds the same way.
    stream = unique("shard-limit")
    create_stream(kinesis, stream, 1)
    summary, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work, "--shard-limit", 1)
    assert summary["elapsed_s"] >= 1.9, summary


def test_gzip_and_stdin_inputs_send_the_same_events(work):
    plain = generated(work, 5_000, seed=9)
    packed = work / "sales.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    outcomes = []
    for name, args, stdin in [
        ("plain", ["--input", plain], None),
        ("gzip", ["--input", packed], None),
        ("stdin-gzip", ["--input", "-"], packed.read_bytes()),
    ]:
        summary_path = work / f"{name}.json"
        result = subprocess.run(
            [str(BIN / "producer"), *map(str, args), "--source-id", "same.csv", "--dry-run", "--aggregate",
             "--summary-json", str(summary_path), "--rejects", str(work / f"{name}-rejects.csv")],
            input=stdin, capture_output=True,
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(summary_path.read_text())
        outcomes.append({k: summary[k] for k in ("rows_read", "events_sent", "rejected", "blank", "records", "bytes")})
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert outcomes[0]["records"] < outcomes[0]["events_sent"] / 20


def test_clear_errors_for_missing_streams_credentials_and_endpoints(kinesis, kinesalite, work):
    def fails(stream, endpoint, **env):
        _, result = produce_to_kinesis(SAMPLE, stream, endpoint, work, check=False,
                                       env=producer_env(endpoint, **env))
        assert result.returncode != 0
        assert "panicked" not in result.stderr and "RUST_BACKTRACE" not in result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == \
            [result.stderr.splitlines()[0]], result.stderr
        return result.stderr

    assert "does not exist" in fails(unique("missing"), kinesalite)

    creating = unique("creating")
    kinesis.create_stream(StreamName=creating, ShardCount=1)
    assert "CREATING, not ACTIVE" in fails(creating, kinesalite)

    assert "cannot reach" in fails("any", "http://127.0.0.1:9")

    no_credentials = fails("any", kinesalite, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    assert "no AWS credentials" in no_credentials

    assert "no AWS region" in fails("any", kinesalite, AWS_REGION="")

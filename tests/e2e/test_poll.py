"""`consumer poll` against the Kinesis emulator, writing the lake to the S3 emulator: producer →
kinesalite → consumer poll → moto S3. DuckDB computes the totals from the source CSVs and from a
copy of the lake's objects."""

import json
import re
import subprocess
from collections import defaultdict

import pytest

from conftest import BIN, SAMPLES, download_lake, producer_env
from kinesis_reader import create_stream, wait_active
from reference import assert_same_totals, connect, lake_totals, reference_totals
from test_kinesis import generated, produce_to_kinesis, unique
from test_pipeline import REAL_SAMPLES


def poll(stream, lake_url, kinesalite, moto, workdir, *extra, check=True):
    summary = workdir / f"poll-{stream}.json"
    # Kinesis at kinesalite, S3 at moto: the SDK takes a per-service endpoint from the environment.
    env = producer_env(kinesalite, AWS_ENDPOINT_URL_S3=moto, RUST_LOG="info")
    result = subprocess.run(
        [str(BIN / "consumer"), "poll", "--stream", f"kinesis://{stream}", "--lake", lake_url,
         "--until-drained", "--summary-json", str(summary), *map(str, extra)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"consumer failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return (json.loads(summary.read_text()) if summary.exists() else None), result


def summed(*totals):
    """Adds reference totals of several sources, key by key."""
    sums = defaultdict(lambda: [0] * 7)
    for rows in totals:
        for row in rows:
            sums[row[:3]] = [a + b for a, b in zip(sums[row[:3]], row[3:])]
    return [key + tuple(values) for key, values in sums.items()]


@pytest.mark.parametrize("relative, delim, encoding", REAL_SAMPLES)
def test_real_samples_through_kinesis_and_s3_match_the_source(
        kinesis, kinesalite, moto, s3, bucket, work, relative, delim, encoding):
    source = SAMPLES / relative
    stream = unique("poll")
    create_stream(kinesis, stream, 2)
    sent, _ = produce_to_kinesis(source, stream, kinesalite, work, "--aggregate")
    consumed, _ = poll(stream, f"s3://{bucket}/lake", kinesalite, moto, work)
    counts = consumed["counts"]
    assert counts["received"] == sent["events_sent"]
    assert counts["records"] == sent["records"]
    assert counts["accepted"] + counts["duplicates"] == sent["events_sent"]
    assert counts["quarantined"] == 0

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    assert_same_totals(reference_totals(con, source, delim, encoding), lake_totals(con, work / "lake"))

    # Polling again finds every shard at its committed position: nothing new, nothing twice.
    again, _ = poll(stream, f"s3://{bucket}/lake", kinesalite, moto, work)
    assert again["counts"]["received"] == 0 and again["batches"] == 0


def test_a_split_shard_is_read_to_its_end_before_its_children(kinesis, kinesalite, moto, s3, bucket, work):
    stream = unique("reshard")
    create_stream(kinesis, stream, 1)
    before = generated(work, 4_000, seed=21)
    first, _ = produce_to_kinesis(before, stream, kinesalite, work, "--source-id", "before.csv")
    parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
    middle = (int(parent["HashKeyRange"]["StartingHashKey"]) + int(parent["HashKeyRange"]["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle))
    wait_active(kinesis, stream)
    after = generated(work, 3_000, seed=22)
    second, _ = produce_to_kinesis(after, stream, kinesalite, work, "--aggregate", "--source-id", "after.csv")

    consumed, result = poll(stream, f"s3://{bucket}/lake", kinesalite, moto, work, "--batch-size", 500)
    assert consumed["shards"] == 3, result.stderr
    assert consumed["counts"]["accepted"] == first["events_sent"] + second["events_sent"], result.stderr

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    expected = summed(reference_totals(con, before), reference_totals(con, after))
    assert_same_totals(expected, lake_totals(con, work / "lake"))
    # The children's first batches were committed after the parent was read to its end.
    order = [(m.group(2), m.group(1)) for m in re.finditer(
        r"(batch committed|shard read to its end).*?shard=\"?(shardId-\d+)", result.stderr)]
    parent_end = order.index((parent["ShardId"], "shard read to its end"))
    children = [i for i, (shard, _) in enumerate(order) if shard != parent["ShardId"]]
    assert children and min(children) > parent_end, order


@pytest.mark.parametrize("make_args, message", [
    (lambda b: ["--stream", "kinesis://no-such-stream", "--lake", f"s3://{b}/lake"], "no-such-stream does not exist"),
    (lambda b: ["--stream", "kinesis://x", "--lake", "s3://no-such-bucket-here/lake"], "no-such-bucket-here: no such bucket"),
])
def test_a_missing_stream_or_bucket_is_one_clear_error(kinesalite, moto, bucket, work, make_args, message):
    env = producer_env(kinesalite, AWS_ENDPOINT_URL_S3=moto)
    result = subprocess.run([str(BIN / "consumer"), "poll", *make_args(bucket), "--until-drained"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "panicked" not in result.stderr

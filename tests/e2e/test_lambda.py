"""The real Lambda binary under `cargo lambda watch`, invoked with `cargo lambda invoke`, writing
its lake to the S3 emulator (moto server). Totals are read back by DuckDB from the objects."""

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

import kinesis_events
from conftest import AWS_ENV, BIN, ROOT, download_lake, free_port
from reference import connect, lake_totals

FIXTURES = ROOT / "tests" / "fixtures" / "kinesis"


def lake_daily_sales(s3, bucket, prefix, dest):
    download_lake(s3, bucket, prefix, dest)
    totals = {}
    for row in lake_totals(connect(), dest):
        key = f"{row[0]}|{row[1]}|{row[2]}"
        names = ["units_sold", "units_returned", "net_quantity", "gross_revenue", "refunds", "net_revenue",
                 "order_lines"]
        totals[key] = {name: str(value) for name, value in zip(names, row[3:])}
    return totals


def emf_lines(text):
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_fixtures_match_their_generator():
    for name, text in kinesis_events.fixtures().items():
        assert (FIXTURES / name).read_text() == text, f"run `python tests/e2e/kinesis_events.py` to refresh {name}"


def test_the_function_writes_a_batch_to_s3_and_reports_no_failures(work, s3, bucket, function_for):
    expected = json.loads((FIXTURES / "batch.expected.json").read_text())
    function = function_for(f"s3://{bucket}/lake")
    response, _ = function.invoke(FIXTURES / "batch.json")
    assert response == {"batchItemFailures": []}

    assert lake_daily_sales(s3, bucket, "lake/", work / "lake") == expected["daily_sales"]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"lake/_state/{expected['stream']}/{expected['shard']}.json" in keys
    quarantine = [k for k in keys if k.startswith("lake/quarantine/year=2010/month=12/day=01/")]
    assert len(quarantine) == 1
    lines = s3.get_object(Bucket=bucket, Key=quarantine[0])["Body"].read().decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["reason"]

    # A redelivery of the same batch (a Lambda retry) changes nothing.
    response, _ = function.invoke(FIXTURES / "batch.json")
    assert response == {"batchItemFailures": []}
    assert lake_daily_sales(s3, bucket, "lake/", work / "lake-again") == expected["daily_sales"]

    metrics = emf_lines(function.output())
    assert [m["Accepted"] for m in metrics] == [expected["counts"]["accepted"], 0]
    assert [m["Replayed"] for m in metrics] == [0, 6]
    assert metrics[0]["Quarantined"] == 1 and metrics[0]["Stream"] == "sales-events"
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SalesLake"


def test_an_unreachable_lake_fails_the_batch_from_its_first_record(work, s3, bucket, function_for):
    expected = json.loads((FIXTURES / "batch.expected.json").read_text())
    # The bucket is there at cold start, then it is gone: every write fails.
    function = function_for(f"s3://{bucket}/lake")
    response, _ = function.invoke(FIXTURES / "batch.json")  # warm, and writes the lake once
    assert response == {"batchItemFailures": []}
    for item in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)
    # The warm instance knows the batch is committed: a redelivery needs no write and succeeds.
    response, _ = function.invoke(FIXTURES / "batch.json")
    assert response == {"batchItemFailures": []}
    # The shard's next records cannot be made durable: Lambda is told to retry from the first.
    later = json.loads((FIXTURES / "batch.json").read_text())
    for record in later["Records"]:
        sequence = str(int(record["kinesis"]["sequenceNumber"]) + 10**9)
        record["kinesis"]["sequenceNumber"] = sequence
        record["eventID"] = f"{record['eventID'].split(':')[0]}:{sequence}"
    (work / "later.json").write_text(json.dumps(later))
    response, _ = function.invoke(work / "later.json")
    first = later["Records"][0]["kinesis"]["sequenceNumber"]
    assert int(first) > int(expected["first_sequence_number"])
    assert response == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert "batch not committed" in function.output()
    last = later["Records"][-1]["kinesis"]["sequenceNumber"]
    replay = (f"consumer replay --stream kinesis://{expected['stream']} --lake s3://{bucket}/lake "
              f"--from-sequence {expected['shard']}={first} --to-sequence {last}")
    assert replay in function.output(), "the log says how to bring the range back if it is given up"


def test_a_missing_lake_url_stops_the_function_at_cold_start(work):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAKE_URL"}
    env.update(AWS_ENV, AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{port}/.rt")
    result = subprocess.run([BIN / "consumer-lambda"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "LAKE_URL is not set" in result.stdout + result.stderr
    assert "panicked" not in result.stdout + result.stderr


def moto_function_with_mapping(moto, name, parallelization_factor):
    """A function in moto's Lambda API with a Kinesis event source mapping, as a deployment makes
    it: the consumer checks its own mappings at cold start through that API."""
    import io
    import zipfile

    import boto3

    clients = {service: boto3.client(service, endpoint_url=moto, region_name=AWS_ENV["AWS_REGION"],
                                     aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
               for service in ("iam", "kinesis", "lambda")}
    role = clients["iam"].create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    clients["kinesis"].create_stream(StreamName=f"{name}-events", ShardCount=1)
    stream = clients["kinesis"].describe_stream_summary(StreamName=f"{name}-events")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("bootstrap", "")
    clients["lambda"].create_function(FunctionName=name, Runtime="provided.al2023", Role=role["Role"]["Arn"],
                                      Handler="bootstrap", Code={"ZipFile": code.getvalue()})
    clients["lambda"].create_event_source_mapping(
        FunctionName=name, EventSourceArn=stream["StreamDescriptionSummary"]["StreamARN"],
        StartingPosition="TRIM_HORIZON", BatchSize=10000, ParallelizationFactor=parallelization_factor)


def test_a_mapping_that_reads_a_shard_in_parallel_stops_the_function_at_cold_start(work, s3, bucket, moto):
    moto_function_with_mapping(moto, "parallel-consumer", parallelization_factor=2)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENV, AWS_ENDPOINT_URL=moto, LAKE_URL=f"s3://{bucket}/lake",
               AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{port}/.rt", AWS_LAMBDA_FUNCTION_NAME="parallel-consumer")
    result = subprocess.run([BIN / "consumer-lambda"], env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "has ParallelizationFactor 2" in output and "parallelization_factor" in output, output
    assert "panicked" not in output
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket), "nothing was written"


def test_a_mapping_of_one_lane_per_shard_runs(work, s3, bucket, moto, function_for):
    moto_function_with_mapping(moto, "serial-consumer", parallelization_factor=1)
    expected = json.loads((FIXTURES / "batch.expected.json").read_text())
    function = function_for(f"s3://{bucket}/lake", AWS_LAMBDA_FUNCTION_NAME="serial-consumer")
    response, _ = function.invoke(FIXTURES / "batch.json")
    assert response == {"batchItemFailures": []}
    assert lake_daily_sales(s3, bucket, "lake/", work / "lake") == expected["daily_sales"]


def test_a_10000_record_batch_warm(work, s3, bucket, function_for):
    """10,000 records (the event source mapping's largest batch size) through the real runtime API.
    The figure is printed for the notes; speed is not asserted. With events of this size the
    payload is ~9 MB: on AWS the mapping caps a batch at Lambda's 6 MB, so real batches of them
    hold ~6,000 records and take proportionally less."""
    function = function_for(f"s3://{bucket}/lake")
    warmup = work / "warmup.json"
    warmup.write_text(json.dumps(kinesis_events.large_batch(100, first_line=20_000)))
    function.invoke(warmup)
    large = work / "large.json"
    # Later in the shard than the warm-up batch, as the next batch would be.
    later = kinesis_events.FIRST_SEQUENCE + 10_000
    large.write_text(json.dumps(kinesis_events.large_batch(10_000, sequence=later)))
    response, elapsed = function.invoke(large)
    assert response == {"batchItemFailures": []}
    handled = emf_lines(function.output())[-1]
    assert handled["Accepted"] == 10_000
    print(f"\n10,000-record batch ({large.stat().st_size / 1e6:.1f} MB): {elapsed:.2f} s through cargo lambda "
          f"invoke, {handled['Duration']} ms in the handler, {handled['Files']} files, {handled['Bytes']} bytes")

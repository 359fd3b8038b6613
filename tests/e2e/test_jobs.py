"""The jobs of the systems the lake replaces: reconciliation (`consumer verify`), reports
(`consumer report`, and the function's report action with its SNS notice) and the regions table
(`consumer regions`). Totals come from DuckDB over the source CSV, never from our code."""

import json
import re
import shutil
import subprocess
import time

import boto3
import pytest

from athena_proxy import AthenaProxy
from conftest import AWS_ENV, BIN, CARGO_LAMBDA, ROOT, SAMPLES, consume, produce, producer_env
from reference import SALES_FROM_CSV, connect
from test_athena import athena_workgroup, queue_result

SAMPLE = SAMPLES / "prasad4edu-DSDoc/Online Retail.csv"
WORKGROUP = "sales-lake-jobs"
DATABASE = "sales_lake_jobs"
REPORT_SQL = (ROOT / "queries" / "daily_sales_by_country.sql").read_text()
REPORT_HEADER = "sale_date,products,order_lines,units_sold,units_returned,net_quantity,gross_revenue,refunds,net_revenue"
# The report's answer, from the source CSV.
REPORT_FROM_CSV = SALES_FROM_CSV + r"""
SELECT CAST(t AS DATE) AS sale_date, COUNT(DISTINCT stock_code) AS products,
  COUNT(*) AS order_lines,
  SUM(CASE WHEN quantity > 0 THEN quantity ELSE 0 END) AS units_sold,
  SUM(CASE WHEN quantity < 0 THEN -quantity ELSE 0 END) AS units_returned,
  SUM(quantity) AS net_quantity,
  CAST(SUM(CASE WHEN quantity > 0 THEN quantity * price ELSE 0 END) AS DECIMAL(38,3)) AS gross_revenue,
  CAST(SUM(CASE WHEN quantity < 0 THEN -quantity * price ELSE 0 END) AS DECIMAL(38,3)) AS refunds,
  CAST(SUM(quantity * price) AS DECIMAL(38,3)) AS net_revenue
FROM sales
WHERE t IS NOT NULL AND country = $country AND CAST(t AS DATE) BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
GROUP BY ALL ORDER BY sale_date
"""


def report_from_csv(country, start, end):
    rows = connect().execute(REPORT_FROM_CSV, {"path": str(SAMPLE), "delim": ",", "encoding": "utf-8",
                                               "country": country, "start": start, "end": end}).fetchall()
    return [",".join(str(v) for v in row) for row in rows]


def consumer(*args, env=None):
    return subprocess.run([str(BIN / "consumer"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT)


@pytest.fixture
def fed(work):
    """A local lake fed the sample: (producer summary, lake)."""
    sent = produce(SAMPLE, work / "stream", work)
    consume(work / "stream", work / "lake", work)
    return sent, work / "lake"


# --- verify ---------------------------------------------------------------------------------------

def verified(lake_url, env=None):
    return consumer("verify", "--lake", lake_url, "--input", SAMPLE, env=env)


def test_verify_passes_on_the_lake_it_fed_and_accounts_for_every_row(fed):
    sent, lake = fed
    result = verified(f"file://{lake}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"source: {sent['rows_read']} rows read = {sent['events_sent']} events + "
            f"{sent['rejected']} rejected + {sent['blank']} blank") in result.stdout
    cells = int(re.search(r"(\d+) cells \(sale_date, country, stock_code\) checked, 0 differ", result.stdout)[1])
    assert re.search(r"\d+ cells \(sale_date, customer_id, country, invoice_no\) checked, 0 differ", result.stdout)
    keys = connect().execute(f"SELECT count(*) FROM ({SALES_FROM_CSV} SELECT DISTINCT CAST(t AS DATE), country, stock_code FROM sales WHERE t IS NOT NULL)",
                             {"path": str(SAMPLE), "delim": ",", "encoding": "utf-8"}).fetchone()[0]
    assert cells == keys > 0


def test_verify_fails_on_a_lake_with_a_file_lost_or_written_twice(fed, work):
    _, lake = fed
    files = sorted((lake / "daily_sales").rglob("*.parquet"))
    assert files
    lost, doubled = work / "lost", work / "doubled"
    shutil.copytree(lake, lost)
    (lost / files[0].relative_to(lake)).unlink()
    shutil.copytree(lake, doubled)
    original = doubled / files[0].relative_to(lake)
    shutil.copy(original, original.with_name("copy-" + original.name))
    for broken, shown in [(lost, "lake no row"), (doubled, "lines")]:
        result = verified(f"file://{broken}")
        assert result.returncode == 1, result.stdout
        differ = int(re.search(r"checked, (\d+) differ", result.stdout)[1])
        assert differ > 0 and shown in result.stdout, result.stdout
        assert f"{differ} of" in result.stderr and "cells differ" in result.stderr, result.stderr
        assert "panicked" not in result.stderr
    # customer_sales is reconciled too: a lost file of it alone fails the check.
    customers_lost = work / "customers-lost"
    shutil.copytree(lake, customers_lost)
    next((customers_lost / "customer_sales").rglob("*.parquet")).unlink()
    result = verified(f"file://{customers_lost}")
    assert result.returncode == 1, result.stdout
    assert re.search(r"daily_sales files; \d+ cells .* checked, 0 differ", result.stdout), result.stdout
    assert int(re.search(r"customer_sales files; \d+ cells .* checked, (\d+) differ", result.stdout)[1]) > 0


def test_verify_reads_an_s3_lake(work, moto, s3, bucket):
    produce(SAMPLE, work / "stream", work)
    env = producer_env(moto)
    lake = f"s3://{bucket}/lake"
    poll = consumer("poll", "--stream", f"file://{work / 'stream'}", "--lake", lake, "--until-drained", env=env)
    assert poll.returncode == 0, poll.stderr
    result = verified(lake, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    key = next(item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="lake/daily_sales/")["Contents"])
    s3.delete_object(Bucket=bucket, Key=key)
    result = verified(lake, env=env)
    assert result.returncode == 1 and "cells differ" in result.stderr, result.stdout + result.stderr


# --- report ---------------------------------------------------------------------------------------

def test_a_report_is_the_countrys_days_as_csv_with_a_header(fed, work):
    _, lake = fed
    output = work / "uk.csv"
    result = consumer("report", "--lake", f"file://{lake}", "--country", "United Kingdom",
                      "--from", "2010-12-01", "--to", "2010-12-01", "--output", output)
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert lines[0] == REPORT_HEADER
    assert lines[1:] == report_from_csv("United Kingdom", "2010-12-01", "2010-12-01")
    assert len(lines) == 2
    # To standard output, and a range with no sales is its header alone.
    empty = consumer("report", "--lake", f"file://{lake}", "--country", "United Kingdom",
                     "--from", "2011-01-01", "--to", "2011-01-31")
    assert empty.returncode == 0 and empty.stdout == REPORT_HEADER + "\n", empty.stdout + empty.stderr


@pytest.mark.parametrize("dates, message", [
    (["--from", "2010-12-09", "--to", "2010-12-01"], "the range ends (2010-12-01) before it starts (2010-12-09)"),
    (["--from", "2010-13-01", "--to", "2010-12-01"], "invalid value '2010-13-01' for '--from"),
])
def test_report_dates_are_checked(fed, dates, message):
    _, lake = fed
    result = consumer("report", "--lake", f"file://{lake}", "--country", "France", *dates)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "panicked" not in result.stderr


@pytest.fixture(scope="module")
def athena(moto):
    return athena_workgroup(moto, WORKGROUP)


REPORT_TYPES = [("sale_date", "date", 0, 0), ("products", "bigint", 19, 0), ("order_lines", "bigint", 19, 0),
                ("units_sold", "bigint", 19, 0), ("units_returned", "bigint", 19, 0),
                ("net_quantity", "bigint", 19, 0), ("gross_revenue", "decimal", 38, 3),
                ("refunds", "decimal", 38, 3), ("net_revenue", "decimal", 38, 3)]


def queue_report_answer(moto, country, start, end):
    """What Athena answers: the report's rows computed by DuckDB from the source CSV."""
    rows = [line.split(",") for line in report_from_csv(country, start, end)]
    assert rows
    queue_result(moto, REPORT_TYPES, rows)
    return rows


def test_a_report_on_an_s3_lake_runs_on_athena_and_can_go_to_s3(moto, athena, s3, bucket):
    rows = queue_report_answer(moto, "United Kingdom", "2010-12-01", "2010-12-01")
    with AthenaProxy(int(moto.rsplit(":", 1)[1])) as proxy:
        env = producer_env(moto, AWS_ENDPOINT_URL_ATHENA=proxy.url, ATHENA_WORKGROUP=WORKGROUP,
                           ATHENA_DATABASE=DATABASE)
        result = consumer("report", "--lake", f"s3://{bucket}/lake", "--country", "United Kingdom",
                          "--from", "2010-12-01", "--to", "2010-12-01",
                          "--output", f"s3://{bucket}/out/uk.csv", env=env)
    assert result.returncode == 0, result.stderr
    body = s3.get_object(Bucket=bucket, Key="out/uk.csv")["Body"].read().decode()
    assert body.splitlines() == [REPORT_HEADER] + [",".join(r) for r in rows]
    start = proxy.requests[0][1]
    assert start["QueryString"] == REPORT_SQL
    assert start["ExecutionParameters"] == ["'United Kingdom'", "'2010-12-01'", "'2010-12-01'"]
    assert start["WorkGroup"] == WORKGROUP


def test_the_function_writes_a_report_and_publishes_where_it_is(work, moto, athena, s3, bucket, function_for):
    sns = boto3.client("sns", endpoint_url=moto, region_name=AWS_ENV["AWS_REGION"],
                       aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    sqs = boto3.client("sqs", endpoint_url=moto, region_name=AWS_ENV["AWS_REGION"],
                       aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    topic = sns.create_topic(Name=f"{bucket}-reports")["TopicArn"]
    # A queue subscribed to the topic receives what a subscriber would.
    queue = sqs.create_queue(QueueName=f"{bucket}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    rows = queue_report_answer(moto, "United Kingdom", "2010-12-01", "2010-12-01")
    request = work / "report.json"
    request.write_text(json.dumps({"action": "report", "country": "United Kingdom",
                                   "from": "2010-12-01", "to": "2010-12-01"}))
    with AthenaProxy(int(moto.rsplit(":", 1)[1])) as proxy:
        function = function_for(f"s3://{bucket}/lake", AWS_ENDPOINT_URL_ATHENA=proxy.url,
                                ATHENA_WORKGROUP=WORKGROUP, ATHENA_DATABASE=DATABASE,
                                REPORT_TOPIC_ARN=topic)
        response, _ = function.invoke(request)
    location = response["report"]
    assert re.fullmatch(rf"s3://{bucket}/lake/reports/United-Kingdom/2010-12-01_2010-12-01-\d{{8}}T\d{{6}}Z\.csv",
                        location), location
    assert response["days"] == len(rows) and response["country"] == "United Kingdom"
    key = location.removeprefix(f"s3://{bucket}/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert body.splitlines() == [REPORT_HEADER] + [",".join(r) for r in rows]
    assert proxy.requests[0][1]["QueryString"] == REPORT_SQL

    messages = []
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1, function.output()
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Subject"] == "Sales report: United Kingdom, 2010-12-01 to 2010-12-01"
    assert json.loads(envelope["Message"]) == response


def test_the_function_refuses_a_report_it_cannot_publish(work, s3, bucket, function_for):
    request = work / "report.json"
    request.write_text(json.dumps({"action": "report", "country": "France", "from": "2010-12-01", "to": "2010-12-02"}))
    function = function_for(f"s3://{bucket}/lake")
    result = subprocess.run(
        [str(CARGO_LAMBDA), "lambda", "invoke", "--invoke-address", "127.0.0.1",
         "--invoke-port", str(function.port), "--data-file", str(request), "--output-format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "REPORT_TOPIC_ARN is not set" in result.stdout + result.stderr + function.output()


# --- regions --------------------------------------------------------------------------------------

def test_users_load_their_own_regions_and_bad_tables_are_refused(fed, work):
    _, lake = fed
    mine = work / "regions.csv"
    mine.write_text("country,region,sub_region\nUnited Kingdom,Home,Isles\nFrance,Abroad,Near\n")
    result = consumer("regions", "--lake", f"file://{lake}", "--file", mine)
    assert result.returncode == 0 and "2 countries written" in result.stdout, result.stderr
    answer = consumer("query", "--lake", f"file://{lake}", "--file", ROOT / "queries" / "sales_by_region.sql",
                      "--param", "2010-12-01", "--param", "2010-12-31", "--format", "json")
    assert answer.returncode == 0, answer.stderr
    regions = {(row["region"], row["sub_region"]) for row in map(json.loads, answer.stdout.splitlines())}
    # Australia and the Netherlands are not in this table: under Unknown, not dropped.
    assert regions == {("Home", "Isles"), ("Abroad", "Near"), ("Unknown", "Unknown")}

    mine.write_text("country,region,sub_region\nFrance,Abroad,Near\nFrance,Abroad,Far\n")
    result = consumer("regions", "--lake", f"file://{lake}", "--file", mine)
    assert result.returncode == 1 and "line 3: France is listed twice" in result.stderr, result.stderr


def test_verify_reads_standard_input_under_the_source_id_it_was_sent_with(work):
    data = SAMPLE.read_bytes()
    sent = subprocess.run([str(BIN / "producer"), "--input", "-", "--source-id", "december-export",
                           "--stream", f"file://{work / 'stream'}", "--rejects", str(work / "rejects.csv")],
                          input=data, capture_output=True)
    assert sent.returncode == 0, sent.stderr
    consume(work / "stream", work / "lake", work)
    args = [str(BIN / "consumer"), "verify", "--lake", f"file://{work / 'lake'}", "--input", "-"]
    same = subprocess.run([*args, "--source-id", "december-export"], input=data, capture_output=True)
    assert same.returncode == 0, same.stdout + same.stderr
    assert b"0 differ" in same.stdout
    # Without it the events' ids cannot be derived as they were sent: refused, not guessed.
    missing = subprocess.run(args, input=data, capture_output=True)
    assert missing.returncode == 1 and b"needs --source-id" in missing.stderr, missing.stderr

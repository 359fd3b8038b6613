"""`consumer query --lake s3://...` runs on Athena: moto's Athena API, behind a proxy that records
the requests and pages the results as Athena does (moto returns every row at once).

moto does not run SQL: a test queues the rows Athena would answer. Those rows are the answer of
the local engine to the same SQL over a lake made from a real sample, so the test also shows that
a result printed from Athena is printed exactly as the local one.
"""

import json
import urllib.request

import boto3
import pytest

from athena_proxy import AthenaProxy
from conftest import AWS_ENV, BIN, ROOT, SAMPLES, consume, produce, producer_env, run

WORKGROUP = "sales-lake-test"
DATABASE = "sales_lake_test"
# Every column type the tables have, a `?` with a quote in its value, and thousands of rows.
LISTING_SQL = """\
SELECT sale_date, country, stock_code, MAX(description) AS description,
       SUM(units_sold) AS units_sold, SUM(net_revenue) AS net_revenue
FROM daily_sales
WHERE country <> ?
GROUP BY sale_date, country, stock_code
ORDER BY sale_date, country, stock_code
"""
LISTING_PARAM = "Nowhere's Land"
# The types Athena reports for LISTING_SQL's columns (SUM widens a decimal to 38 digits).
LISTING_TYPES = [("sale_date", "date", 0, 0), ("country", "varchar", 2147483647, 0),
                 ("stock_code", "varchar", 2147483647, 0), ("description", "varchar", 2147483647, 0),
                 ("units_sold", "bigint", 19, 0), ("net_revenue", "decimal", 38, 3)]


def moto_api(moto, path, payload):
    request = urllib.request.Request(f"{moto}{path}", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201), response.status


def queue_result(moto, columns, rows):
    """The next query's answer, with the label row Athena puts first in a SELECT's results."""
    def athena_row(values):
        return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}

    column_info = [{"Name": n, "Label": n, "Type": t, "Precision": p, "Scale": s, "Nullable": "UNKNOWN",
                    "CaseSensitive": t == "varchar", "CatalogName": "hive", "SchemaName": "", "TableName": ""}
                   for n, t, p, s in columns]
    labels = athena_row([n for n, *_ in columns])
    moto_api(moto, "/moto-api/static/athena/query-results", {
        "region": AWS_ENV["AWS_REGION"],
        "results": [{"rows": [labels] + [athena_row(r) for r in rows], "column_info": column_info}],
    })


def athena_workgroup(moto, workgroup):
    """moto's Athena with the workgroup made; queries in it take a few polls to succeed."""
    client = boto3.client("athena", endpoint_url=moto, region_name=AWS_ENV["AWS_REGION"],
                          aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    client.create_work_group(Name=workgroup, Configuration={
        "ResultConfiguration": {"OutputLocation": "s3://athena-results/"},
        "EnforceWorkGroupConfiguration": True,
    })
    # Queries stay QUEUED, then RUNNING, for two polls each before they succeed, as a real
    # query takes a while: the client must poll until the end.
    moto_api(moto, "/moto-api/state-manager/set-transition",
             {"model_name": "athena::execution", "transition": {"progression": "manual", "times": 2}})
    return client


@pytest.fixture(scope="module")
def athena(moto):
    return athena_workgroup(moto, WORKGROUP)


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory):
    work = tmp_path_factory.mktemp("athena")
    produce(SAMPLES / "allgaetan-aws-cloud/test.csv", work / "stream", work)
    consume(work / "stream", work / "lake", work)
    return work / "lake"


def query(proxy, *args, check=True, workgroup=WORKGROUP):
    """`consumer query` on an S3 lake, the workgroup and database from the environment."""
    import subprocess

    result = subprocess.run(
        [str(BIN / "consumer"), "query", "--lake", "s3://sales-lake-bucket/sales", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT,
        env=producer_env(proxy.url, ATHENA_WORKGROUP=workgroup, ATHENA_DATABASE=DATABASE))
    if check and result.returncode != 0:
        raise AssertionError(f"consumer query failed ({result.returncode}):\n{result.stderr}")
    return result


def test_a_query_is_started_polled_and_read_page_by_page(moto, athena, local_lake, tmp_path):
    local = run(BIN / "consumer", "query", "--lake", f"file://{local_lake}", "--format", "csv",
                "--param", LISTING_PARAM, LISTING_SQL).stdout
    lines = local.splitlines()
    import csv

    rows = [[v or None for v in row] for row in csv.reader(lines[1:])]
    assert len(rows) > 2 * 1000, f"{len(rows)} rows: too few to need three pages"
    queue_result(moto, LISTING_TYPES, rows)

    with AthenaProxy(int(moto.rsplit(":", 1)[1])) as proxy:
        result = query(proxy, "--format", "csv", "--param", LISTING_PARAM, LISTING_SQL)

    # The same text, row for row, as the local engine printed.
    assert result.stdout == local
    assert "Athena execution" in result.stderr

    operations = proxy.operations()
    pages = -(-(len(rows) + 1) // 1000)
    polls = operations.count("GetQueryExecution")
    assert operations == ["StartQueryExecution"] + ["GetQueryExecution"] * polls + ["GetQueryResults"] * pages
    assert proxy.states[-1] == "SUCCEEDED" and proxy.states[:-1], proxy.states
    assert set(proxy.states[:-1]) == {"QUEUED", "RUNNING"}, proxy.states

    start = proxy.requests[0][1]
    assert start["QueryString"] == LISTING_SQL
    assert start["ExecutionParameters"] == ["'Nowhere''s Land'"]
    assert start["WorkGroup"] == WORKGROUP
    assert start["QueryExecutionContext"] == {"Database": DATABASE, "Catalog": "AwsDataCatalog"}
    execution_id = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"][-1]
    reads = [body for operation, body in proxy.requests if operation == "GetQueryResults"]
    assert all(body["QueryExecutionId"] == execution_id and body["MaxResults"] == 1000 for body in reads)
    assert [body.get("NextToken") for body in reads] == [None] + [str(1000 * i) for i in range(1, pages)]


def test_a_query_file_is_sent_as_written_with_its_parameters(moto, athena):
    sql_file = ROOT / "queries" / "daily_sales_by_country.sql"
    queue_result(moto, [("sale_date", "date", 0, 0), ("products", "bigint", 19, 0)], [["2010-12-01", "7"]])
    with AthenaProxy(int(moto.rsplit(":", 1)[1])) as proxy:
        result = query(proxy, "--file", sql_file, "--param", "United Kingdom", "--param", "2010-12-01",
                       "--param", "2010-12-10", "--format", "json")
    assert json.loads(result.stdout) == {"sale_date": "2010-12-01", "products": 7}
    start = proxy.requests[0][1]
    assert start["QueryString"] == sql_file.read_text()
    assert start["ExecutionParameters"] == ["'United Kingdom'", "'2010-12-01'", "'2010-12-10'"]


def test_a_failed_query_is_one_clear_error_with_athenas_reason(moto, athena):
    reason = "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"
    with AthenaProxy(int(moto.rsplit(":", 1)[1]), fail_with=reason) as proxy:
        result = query(proxy, "SELECT nope FROM daily_sales", check=False)
    assert result.returncode == 1
    assert "the query failed on Athena" in result.stderr and reason in result.stderr, result.stderr
    assert "panicked" not in result.stderr
    assert "GetQueryResults" not in proxy.operations()


@pytest.mark.parametrize("args, message", [
    (["--workgroup", "no-such-workgroup", "SELECT 1"], "Athena did not start the query (workgroup no-such-workgroup)"),
    (["--param", "x", "SELECT 1"], "the query has 0 `?` parameters but 1 values were given"),
    (["--timeout", "0s", "SELECT 1"], "the query was still running after"),
])
def test_athena_errors_are_one_clear_message(moto, athena, args, message):
    with AthenaProxy(int(moto.rsplit(":", 1)[1])) as proxy:
        result = query(proxy, *args, check=False)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "panicked" not in result.stderr, result.stderr
    if "--timeout" in args:
        # A query given up on is stopped, not left scanning (and billing) on Athena.
        assert proxy.operations()[-1] == "StopQueryExecution", proxy.operations()

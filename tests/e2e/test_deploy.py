"""The deployment in terraform/, checked without AWS: its Glue tables against the Parquet the
consumer writes, its partition projection against the lake's paths, and `make -n deploy`.

terraform/ is read with python-hcl2, the Parquet with DuckDB: neither is our code.
"""

import re
import subprocess
from pathlib import Path

import duckdb
import hcl2
import pytest

from conftest import ROOT, SAMPLES, consume, produce

TERRAFORM = ROOT / "terraform"
TABLES = ["sales_events", "daily_sales", "customer_sales"]


def unquote(value):
    """python-hcl2 keeps a string literal's quotes; expressions come as ${...}."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def terraform_blocks(kind):
    """Every top-level block of this kind ("locals", "resource") over all .tf files."""
    blocks = []
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as f:
            blocks.extend(hcl2.load(f).get(kind, []))
    return blocks


def terraform_locals():
    merged = {}
    for block in terraform_blocks("locals"):
        merged.update(block)
    return merged


def terraform_resource(kind, name):
    for block in terraform_blocks("resource"):
        for key, resources in block.items():
            if unquote(key) == kind:
                for resource_name, body in resources.items():
                    if unquote(resource_name) == name:
                        return body
    raise AssertionError(f"no resource {kind}.{name} in terraform/")


def hive_type(field):
    """The Glue (Hive) type Athena reads a Parquet column as, from DuckDB's parquet_schema()."""
    physical, logical = field["type"], field["logical_type"] or ""
    if logical.startswith("StringType"):
        return "string"
    if logical.startswith("DecimalType"):
        return f"decimal({field['precision']},{field['scale']})"
    if logical.startswith("DateType"):
        return "date"
    if logical.startswith("TimestampType"):
        # Athena's timestamp has no zone and millisecond precision: the writer must match.
        assert "isAdjustedToUTC=0" in logical and "MILLIS=MilliSeconds()" in logical, logical
        return "timestamp"
    if physical == "INT64" and not logical:
        return "bigint"
    if physical == "INT32" and not logical:
        return "int"
    if physical == "BOOLEAN":
        return "boolean"
    if physical == "DOUBLE":
        return "double"
    raise AssertionError(f"no Hive type for {field}")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    work = tmp_path_factory.mktemp("deploy")
    produce(SAMPLES / "allgaetan-aws-cloud/test.csv", work / "stream", work)
    consume(work / "stream", work / "lake", work)
    return work / "lake"


def parquet_columns(lake, table):
    files = sorted((lake / table).rglob("*.parquet"))
    assert files, f"the consumer wrote no {table} file"
    schemas = set()
    for path in files[:5]:
        fields = duckdb.sql(
            "SELECT name, type, logical_type, precision, scale FROM parquet_schema(?) "
            "WHERE num_children IS NULL OR num_children = 0", params=[str(path)]).fetchall()
        schemas.add(tuple((name, hive_type(dict(type=t, logical_type=lt, precision=p, scale=s)))
                          for name, t, lt, p, s in fields))
    assert len(schemas) == 1, f"{table} files disagree on their schema: {schemas}"
    return list(schemas.pop())


@pytest.mark.parametrize("table", TABLES)
def test_glue_columns_are_the_parquet_columns_the_consumer_writes(lake, table):
    declared = terraform_locals()["lake_tables"][table]["columns"]
    glue = [(unquote(c["name"]), unquote(c["type"])) for c in declared]
    assert glue == parquet_columns(lake, table)


def test_the_glue_tables_are_made_from_those_columns():
    # The resource must take its tables, columns and partition keys from the locals checked
    # above, or the checks would compare a list nobody deploys.
    table = terraform_resource("aws_glue_catalog_table", "lake")
    assert table["for_each"] == "${local.lake_tables}"
    assert sorted(terraform_locals()["lake_tables"]) == sorted(TABLES)
    columns = table["storage_descriptor"][0]["dynamic"][0]['"columns"']
    assert columns["for_each"] == "${each.value.columns}"
    assert columns["content"][0]["type"] == "${columns.value.type}"
    keys = table["dynamic"][0]['"partition_keys"']
    assert keys["for_each"] == "${local.partition_keys}"
    serde = table["storage_descriptor"][0]["ser_de_info"][0]
    assert unquote(serde["serialization_library"]) == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@pytest.mark.parametrize("table", TABLES)
def test_partition_projection_finds_every_partition_the_consumer_writes(lake, table):
    keys = [(unquote(k["name"]), unquote(k["type"])) for k in terraform_locals()["partition_keys"]]
    assert keys == [("year", "int"), ("month", "int"), ("day", "int")]

    parameters = {unquote(k): unquote(v) for k, v in
                  terraform_resource("aws_glue_catalog_table", "lake")["parameters"].items()}
    assert parameters["projection.enabled"] == "true"
    template = parameters["storage.location.template"]
    assert template == "${local.lake_url}/${each.key}/year=$${year}/month=$${month}/day=$${day}"
    # The year range is a variable: the sample's years must fall in its default.
    assert parameters["projection.year.range"] == "${var.partition_years}"
    first, last = (int(v) for v in partition_years_default().split(","))

    directories = {p.parent.relative_to(lake / table) for p in (lake / table).rglob("*.parquet")}
    assert directories
    for directory in directories:
        match = re.fullmatch(r"year=(\d+)/month=(\d+)/day=(\d+)", str(directory))
        assert match, f"{table}/{directory} is not year=/month=/day="
        year, month, day = (int(g) for g in match.groups())
        # What Athena projects for these integers, with the declared ranges and padding.
        lo, hi = (int(v) for v in parameters["projection.month.range"].split(","))
        assert lo <= month <= hi
        lo, hi = (int(v) for v in parameters["projection.day.range"].split(","))
        assert lo <= day <= hi
        projected = (f"year={year}/month={month:0{int(parameters['projection.month.digits'])}d}"
                     f"/day={day:0{int(parameters['projection.day.digits'])}d}")
        assert projected == str(directory)
        assert first <= year <= last, f"{year} is outside the projected years {first}..{last}"


def partition_years_default():
    for block in terraform_blocks("variable"):
        for name, body in block.items():
            if unquote(name) == "partition_years":
                return unquote(body["default"])
    raise AssertionError("no variable partition_years")


def terraform_variable(name):
    for block in terraform_blocks("variable"):
        for key, body in block.items():
            if unquote(key) == name:
                return body
    raise AssertionError(f"no variable {name} in terraform/")


def test_the_mapping_reads_each_shard_in_one_lane_and_the_function_can_check_it():
    # The commit protocol needs ParallelizationFactor 1: the variable the mapping takes it from
    # refuses anything else, and the function's role may list its mappings (it checks them at
    # cold start, and refuses to run under a parallel one).
    mapping = terraform_resource("aws_lambda_event_source_mapping", "stream")
    assert mapping["parallelization_factor"] == "${var.parallelization_factor}"
    variable = terraform_variable("parallelization_factor")
    assert variable["default"] == 1
    condition = variable["validation"][0]["condition"]
    assert condition == "${var.parallelization_factor == 1}", condition
    policy = [b for b in terraform_blocks("data") if '"aws_iam_policy_document"' in b or "aws_iam_policy_document" in b]
    statements = [s for block in policy for docs in block.values() for name, doc in docs.items()
                  if unquote(name) == "consumer" for s in doc["statement"]]
    assert any([unquote(a) for a in s.get("actions", [])] == ["lambda:ListEventSourceMappings"]
               for s in statements), statements


def test_every_query_file_is_a_saved_athena_query():
    named = terraform_resource("aws_athena_named_query", "lake")
    assert named["for_each"] == '${fileset("${path.module}/../queries", "*.sql")}'
    assert sorted((ROOT / "queries").glob("*.sql")), "no SQL in queries/"


def test_make_deploy_builds_the_arm64_zip_then_applies():
    steps = subprocess.run(["make", "-n", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    steps = re.sub(r"\\\n\s*", " ", steps)  # one line per command
    build = next((line for line in steps.splitlines() if "cargo-lambda lambda build" in line), None)
    assert build, steps
    assert "--arm64" in build and "--output-format zip" in build and "--bin consumer-lambda" in build
    init = steps.index("terraform -chdir=terraform init")
    apply = steps.index("terraform -chdir=terraform apply")
    assert steps.index("cargo-lambda lambda build") < init < apply
    assert "lambda_zip=" in steps[apply:]


def test_make_destroy_and_plan_run_terraform():
    for target, command in [("destroy", "terraform -chdir=terraform destroy"),
                            ("plan", "terraform -chdir=terraform plan")]:
        steps = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout
        assert command in steps, steps


def test_make_help_lists_every_target():
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ["build", "demo", "test", "lint", "unit", "infra", "e2e", "bench", "lambda", "deploy", "plan",
                   "destroy", "clean"]:
        assert re.search(rf"^  make {target} ", listed, re.M), f"make help does not list {target}:\n{listed}"


def test_the_regions_table_reads_the_csv_the_repository_ships():
    header = (ROOT / "reference" / "regions.csv").read_text().splitlines()[0].split(",")
    declared = [unquote(c["name"]) for c in terraform_locals()["regions_columns"]]
    assert declared == header
    table = terraform_resource("aws_glue_catalog_table", "regions")
    assert unquote(table["storage_descriptor"][0]["location"]) == "${local.lake_url}/regions/"
    parameters = {unquote(k): unquote(v) for k, v in table["parameters"].items()}
    assert parameters["skip.header.line.count"] == "1"
    upload = terraform_resource("aws_s3_object", "regions")
    assert unquote(upload["key"]) == "${local.lake_prefix}/regions/regions.csv"
    assert unquote(upload["source"]) == "${path.module}/../reference/regions.csv"

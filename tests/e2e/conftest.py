"""Shared helpers of the end-to-end tests: the real binaries, driven as a user drives them."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BIN_DIR", ROOT / "target" / "debug"))
# Real Online Retail exports, kept in the repository with their provenance and licence
# (SOURCES.md beside them): the tests read nothing outside it.
SAMPLES = ROOT / "tests" / "data" / "online-retail"


def run(*args, check=True, cwd=None):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def produce(csv, stream, workdir, *extra):
    summary = Path(workdir) / "producer-summary.json"
    run(BIN / "producer", "--input", csv, "--stream", f"file://{stream}", "--summary-json", summary,
        "--rejects", Path(workdir) / "rejects.csv", *extra)
    return json.loads(summary.read_text())


def consume(stream, lake, workdir, *extra):
    summary = Path(workdir) / "consumer-summary.json"
    run(BIN / "consumer", "poll", "--stream", f"file://{stream}", "--lake", f"file://{lake}",
        "--until-drained", "--summary-json", summary, *extra)
    return json.loads(summary.read_text())


@pytest.fixture
def work(tmp_path):
    return tmp_path


# --- Kinesis: a real emulator (kinesalite) on 127.0.0.1, started once per test session ---------

KINESALITE = os.environ.get("KINESALITE", str(ROOT / ".tools" / "node_modules" / ".bin" / "kinesalite"))
# Fake credentials: the emulator checks their form, never their value.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTTESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
# Streams stay CREATING this long, as on AWS, so a test can see a stream that is not ACTIVE yet.
CREATE_STREAM_MS = 1500


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30.0):
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def serve(command, port):
    """Runs an emulator on 127.0.0.1:port for as long as the fixture lives; yields its URL."""
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def kinesalite():
    """The Kinesis emulator's endpoint URL. Installed by `make e2e` (npm ci into .tools)."""
    if not Path(KINESALITE).exists():
        raise AssertionError(f"kinesalite is not installed at {KINESALITE}: run the tests with `make test`")
    port = free_port()
    yield from serve([KINESALITE, "--port", str(port), "--host", "127.0.0.1", "--createStreamMs",
                      str(CREATE_STREAM_MS), "--deleteStreamMs", "0", "--updateStreamMs", "0",
                      "--shardLimit", "1000"], port)


@pytest.fixture(scope="session")
def kinesis(kinesalite):
    import boto3

    return boto3.client(
        "kinesis", endpoint_url=kinesalite, region_name=AWS_ENV["AWS_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def producer_env(endpoint, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint, RUST_LOG="warn")
    env.update(extra)
    return env


# --- S3: the moto server (from PyPI, in the test venv) on 127.0.0.1, once per test session ------

BIN_PY = Path(sys.executable).parent


@pytest.fixture(scope="session")
def moto():
    """The S3 emulator's endpoint URL."""
    port = free_port()
    yield from serve([BIN_PY / "moto_server", "-H", "127.0.0.1", "-p", str(port)], port)


@pytest.fixture(scope="session")
def s3(moto):
    import boto3

    return boto3.client(
        "s3", endpoint_url=moto, region_name=AWS_ENV["AWS_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket per test."""
    import re

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + f"-{free_port()}"
    s3.create_bucket(Bucket=name)
    return name


def download_lake(s3, bucket, prefix, dest):
    """Copies every object under s3://bucket/prefix to dest, for DuckDB to read."""
    dest = Path(dest)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            target = dest / key[len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            keys.append(key)
    return keys


# --- The Lambda function: the real binary under `cargo lambda watch` ------------------------------

CARGO_LAMBDA = BIN_PY / "cargo-lambda"


class Function:
    """`cargo lambda watch` serving the Lambda runtime API, and our built binary as the function."""

    def __init__(self, workdir, env):
        self.port = free_port()
        self.log = open(Path(workdir) / "lambda.log", "w+")
        self.watch = subprocess.Popen(
            [CARGO_LAMBDA, "lambda", "watch", "--only-lambda-apis",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        function_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        function_env.update(AWS_ENV)
        function_env.update(AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{self.port}/.rt",
                            AWS_LAMBDA_FUNCTION_NAME="_", AWS_LAMBDA_FUNCTION_VERSION="1",
                            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024")
        function_env.update(env)
        self.function = subprocess.Popen([BIN / "consumer-lambda"], env=function_env,
                                         stdout=self.log, stderr=subprocess.STDOUT)

    def invoke(self, data_file):
        """The function's response, and the seconds the invocation took end to end."""
        started = time.monotonic()
        result = subprocess.run(
            [CARGO_LAMBDA, "lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
             "--data-file", str(data_file), "--output-format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 0, f"invoke failed:\n{result.stdout}\n{result.stderr}\n{self.output()}"
        return json.loads(result.stdout), elapsed

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        for process in (self.function, self.watch):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


# The stream the Lambda fixtures' events come from (tests/fixtures/kinesis): the function lists
# its shards to learn a new shard's ancestors.
FIXTURE_STREAM = "sales-events"


@pytest.fixture
def function_for(work, moto, kinesis, kinesalite):
    """Starts functions on a lake: S3 (and the Lambda API) at moto, Kinesis at kinesalite."""
    from kinesis_reader import wait_active

    try:
        kinesis.create_stream(StreamName=FIXTURE_STREAM, ShardCount=1)
    except kinesis.exceptions.ResourceInUseException:
        pass  # made by an earlier test of the session
    wait_active(kinesis, FIXTURE_STREAM)
    started = []

    def start(lake_url, **env):
        function = Function(work, {"AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_KINESIS": kinesalite,
                                   "LAKE_URL": lake_url, **env})
        started.append(function)
        return function

    yield start
    for function in started:
        function.stop()

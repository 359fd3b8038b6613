"""Shared helpers of the end-to-end tests: the real binaries, driven as a user drives them."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BIN_DIR", ROOT / "target" / "debug"))
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLES = SHARED_DATA / "online-retail-samples"


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

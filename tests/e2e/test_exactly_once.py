"""Exactly-once totals, checked by DuckDB against the source CSV:

- the lakes the Rust fault-injection test (`consumer/tests/exactly_once.rs`) left behind;
- chaos: `consumer poll` killed with SIGKILL at random moments and restarted until drained while
  the producer streams the same file twice, against a `file://` stream and lake and against the
  emulators (kinesalite and moto S3);
- two pollers on the same stream at once;
- `consumer compact` and `consumer status` on the result.
"""

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import BIN, download_lake, producer_env, run
from kinesis_reader import create_stream
from reference import (
    assert_same_totals,
    connect,
    lake_customers,
    lake_totals,
    reference_customers,
    reference_totals,
)
from test_kinesis import generated, unique

FAULT_OUTPUT = BIN.parent / "tmp" / "exactly-once"


def files_per_partition(lake):
    return Counter(str(p.parent) for p in Path(lake).glob("*/year=*/month=*/day=*/*.parquet")
                   if p.parts[-5] in ("sales_events", "daily_sales", "customer_sales"))


def test_the_fault_injection_lakes_hold_the_source_exactly():
    """The Rust test crashed its lake at every kind of write; DuckDB checks what it left."""
    csv = FAULT_OUTPUT / "sales.csv"
    assert csv.exists(), f"{csv} is missing: `make test` runs the Rust tests before these"
    con = connect()
    expected, customers = reference_totals(con, csv), reference_customers(con, csv)
    for lake in ("lake-before-compaction", "lake"):
        assert_same_totals(expected, lake_totals(con, FAULT_OUTPUT / lake))
        assert_same_totals(customers, lake_customers(con, FAULT_OUTPUT / lake))
        events = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM read_parquet($g)",
            {"g": f"{FAULT_OUTPUT / lake}/sales_events/*/*/*/*.parquet"}).fetchone()
        assert events[0] == events[1], f"{lake}: an event is in the lake twice"
    assert set(files_per_partition(FAULT_OUTPUT / "lake").values()) == {1}


def poll_command(stream_url, lake_url, *extra):
    return [str(BIN / "consumer"), "poll", "--stream", stream_url, "--lake", lake_url, *map(str, extra)]


def kill_and_restart(command, env, rng, producing, log, at_least):
    """Runs the poller, SIGKILLs it at random moments while `producing()` holds and until it has
    been killed `at_least` times (a fast producer must not leave the test with fewer kills than it
    means to make), then once more, until a run with --until-drained ends by itself. Returns the
    number of kills."""
    kills = 0
    while True:
        drained = not producing() and kills >= at_least
        args = command + (["--until-drained"] if drained else [])
        process = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        try:
            process.wait(timeout=rng.uniform(0.3, 2.5))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, f"poller failed ({process.returncode}), see {log.name}"
        if drained:
            return kills


def stream_twice(produce):
    """Runs `produce()` twice in a background thread; returns a `producing()` test."""
    import threading

    thread = threading.Thread(target=lambda: (produce(), produce()))
    thread.start()
    return thread.is_alive, thread


def check_lake(con, csv, lake):
    assert_same_totals(reference_totals(con, csv), lake_totals(con, lake))
    # customer_sales is under the same protocol: no invoice, line or amount lost or doubled.
    assert_same_totals(reference_customers(con, csv), lake_customers(con, lake))
    events = con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($g)",
                         {"g": f"{lake}/sales_events/*/*/*/*.parquet"}).fetchone()
    assert events[0] == events[1]
    return events[0]


def status(lake_url, *extra, env=None):
    result = subprocess.run([str(BIN / "consumer"), "status", "--lake", lake_url, *extra],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_poller_killed_at_random_while_a_file_is_streamed_twice_counts_every_row_once(work):
    csv = generated(work, 30_000, seed=5)
    stream, lake = work / "stream", work / "lake"
    rng = random.Random(7)

    def produce():
        # Plain records at a bounded rate: many small batches, so kills land mid-batch.
        run(BIN / "producer", "--input", csv, "--stream", f"file://{stream}", "--shards", 3,
            "--rate", 25_000, "--rejects", work / "rejects.csv")

    producing, thread = stream_twice(produce)
    while not (stream / "stream.json").exists():
        time.sleep(0.05)
    with open(work / "poller.log", "w") as log:
        kills = kill_and_restart(poll_command(f"file://{stream}", f"file://{lake}", "--batch-size", 200),
                                 None, rng, producing, log, at_least=3)
    thread.join()
    print(f"{kills} kills")

    con = connect()
    rows = check_lake(con, csv, lake)
    report = json.loads(status(f"file://{lake}", "--stream", f"file://{stream}", "--json"))
    totals = report["totals"]
    assert totals["accepted"] == rows
    assert totals["duplicates"] == rows, "the second run of the file was dropped event by event"
    assert totals["received"] == totals["accepted"] + totals["duplicates"] + totals["quarantined"]
    assert all(s["lag_s"] == 0 and s["in_flight_files"] == 0 for s in report["shards"])
    assert "adds up" in status(f"file://{lake}")

    # Compaction: one file per table and day, the same totals, and nothing to do the second time.
    days = [r[0] for r in con.execute(
        "SELECT DISTINCT sale_date FROM read_parquet($g) ORDER BY 1",
        {"g": f"{lake}/daily_sales/*/*/*/*.parquet"}).fetchall()]
    for day in days:
        out = run(BIN / "consumer", "compact", "--lake", f"file://{lake}", "--day", day).stdout
        assert "duplicates dropped" in out, out
    assert set(files_per_partition(lake).values()) == {1}
    assert check_lake(con, csv, lake) == rows
    again = run(BIN / "consumer", "compact", "--lake", f"file://{lake}", "--day", days[0]).stdout
    assert "already one file per table" in again


def test_two_pollers_on_the_same_shards_commit_each_batch_once(work):
    csv = generated(work, 20_000, seed=9)
    stream, lake = work / "stream", work / "lake"
    run(BIN / "producer", "--input", csv, "--stream", f"file://{stream}", "--shards", 2,
        "--rejects", work / "rejects.csv", "--summary-json", work / "sent.json")
    sent = json.loads((work / "sent.json").read_text())
    pollers = [
        subprocess.Popen(poll_command(f"file://{stream}", f"file://{lake}", "--until-drained",
                                      "--batch-size", size, "--summary-json", work / f"poller-{size}.json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for size in (150, 230)
    ]
    for poller in pollers:
        _, err = poller.communicate(timeout=600)
        assert poller.returncode == 0, err
    summaries = [json.loads((work / f"poller-{size}.json").read_text()) for size in (150, 230)]
    print("conflicts", [s["conflicts"] for s in summaries])
    con = connect()
    rows = check_lake(con, csv, lake)
    report = json.loads(status(f"file://{lake}", "--json"))
    assert report["totals"]["accepted"] == rows
    assert report["totals"]["records"] == sent["records"], "each record committed by one poller"


def test_a_poller_killed_at_random_against_the_emulators_counts_every_row_once(
        kinesis, kinesalite, moto, s3, bucket, work):
    csv = generated(work, 10_000, seed=3)
    name = unique("chaos")
    create_stream(kinesis, name, 2)
    env = producer_env(kinesalite, AWS_ENDPOINT_URL_S3=moto, RUST_LOG="info")
    rng = random.Random(11)

    def produce():
        subprocess.run([str(BIN / "producer"), "--input", str(csv), "--stream", f"kinesis://{name}",
                        "--aggregate", "--rejects", str(work / "rejects.csv")],
                       env=producer_env(kinesalite), check=True, capture_output=True)

    producing, thread = stream_twice(produce)
    with open(work / "poller.log", "w") as log:
        kills = kill_and_restart(poll_command(f"kinesis://{name}", f"s3://{bucket}/lake", "--batch-size", 100),
                                 env, rng, producing, log, at_least=1)
    thread.join()
    print(f"{kills} kills")

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    rows = check_lake(con, csv, work / "lake")
    report = json.loads(status(f"s3://{bucket}/lake", "--stream", f"kinesis://{name}", "--json", env=env))
    assert report["totals"]["accepted"] == rows
    # Every event of the second run, and any the producer re-sent after a timeout.
    assert report["totals"]["duplicates"] >= rows
    assert all(s["lag_s"] == 0 for s in report["shards"])

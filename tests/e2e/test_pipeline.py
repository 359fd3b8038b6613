"""End to end: real CSV exports through the real producer and consumer binaries, the lake read
back by DuckDB and compared with totals DuckDB computes straight from the source CSV."""

import json
import shutil
import subprocess
import struct
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import BIN, ROOT, SAMPLES, consume, produce, run
from reference import (
    assert_same_totals,
    connect,
    lake_customers,
    lake_totals,
    reference_customer_totals,
    reference_customers,
    reference_totals,
)

REAL_SAMPLES = [
    pytest.param("prasad4edu-DSDoc/Online Retail.csv", ",", "utf-8", id="comma-crlf-blank-rows"),
    pytest.param("allgaetan-aws-cloud/test.csv", ";", "utf-8", id="semicolon-repeated-rows"),
    pytest.param("Ahmed-878-Ghazaly-s-Public-Repo-/Online_Retail.csv", ",", "latin-1", id="latin1-two-date-forms"),
]


def data_lines(path):
    """Physical data lines, as a user counts them: every line after the header."""
    return len(Path(path).read_bytes().splitlines()) - 1


def lake_events(con, lake):
    return con.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM read_parquet($g, hive_partitioning = true)",
        {"g": f"{lake}/sales_events/*/*/*/*.parquet"},
    ).fetchone()


@pytest.mark.parametrize("packing", [[], ["--aggregate"], ["--aggregate", "--compression", "compact"]],
                         ids=["plain", "aggregated", "compact"])
@pytest.mark.parametrize("relative, delim, encoding", REAL_SAMPLES)
def test_real_sample_totals_match_the_source(work, relative, delim, encoding, packing):
    source = SAMPLES / relative
    assert source.is_file(), f"missing sample {source}"
    stream, lake = work / "stream", work / "lake"
    sent = produce(source, stream, work, *packing)
    assert sent["rows_read"] == data_lines(source)
    assert sent["rows_read"] == sent["events_sent"] + sent["rejected"] + sent["blank"]
    consumed = consume(stream, lake, work)
    counts = consumed["counts"]
    assert counts["received"] == sent["events_sent"]
    assert counts["records"] == sent["records"]
    assert counts["accepted"] + counts["duplicates"] + counts["quarantined"] == counts["received"]

    con = connect()
    assert lake_events(con, lake) == (sent["events_sent"], sent["events_sent"])
    assert_same_totals(reference_totals(con, source, delim, encoding), lake_totals(con, lake))
    # Customers: one invoice's lines are spread over the four shards, and orders still count
    # each invoice once.
    assert_same_totals(reference_customers(con, source, delim, encoding), lake_customers(con, lake))
    # Partitions are the sale's own date.
    misplaced = con.execute(
        """SELECT count(*) FROM read_parquet($g, hive_partitioning = true)
           WHERE year <> year(sale_date) OR month <> month(sale_date) OR day <> day(sale_date)""",
        {"g": f"{lake}/daily_sales/*/*/*/*.parquet"},
    ).fetchone()[0]
    assert misplaced == 0


def test_streaming_the_same_file_twice_changes_no_total(work):
    source = SAMPLES / "allgaetan-aws-cloud/test.csv"
    stream, lake = work / "stream", work / "lake"
    first = produce(source, stream, work)
    consume(stream, lake, work, "--batch-size", "700")
    # The second time in the compact form: its reader derives the same ids.
    produce(source, stream, work, "--aggregate", "--compression", "compact")
    second = consume(stream, lake, work, "--batch-size", "700")
    assert second["counts"]["received"] == first["events_sent"]
    assert second["counts"]["duplicates"] == first["events_sent"]
    assert second["counts"]["accepted"] == 0
    con = connect()
    assert lake_events(con, lake) == (first["events_sent"], first["events_sent"])
    assert_same_totals(reference_totals(con, source, ";"), lake_totals(con, lake))


def test_generated_data_with_rejects_accounts_for_every_row(work):
    source = work / "generated.csv"
    run(BIN / "producer", "generate", "--rows", "30000", "--seed", "3", "--output", source)
    stream, lake = work / "stream", work / "lake"
    sent = produce(source, stream, work, "--shards", "3")
    assert sent["rows_read"] == data_lines(source) == 30000
    assert sent["rejected"] > 0 and sent["blank"] > 0
    assert sent["rows_read"] == sent["events_sent"] + sent["rejected"] + sent["blank"]
    # Every reject names its line, and its raw text is that line of the file.
    lines = source.read_text().splitlines()
    con = connect()
    rejects = con.execute("SELECT line, reason, raw FROM read_csv($p, all_varchar = true)", {"p": str(work / "rejects.csv")}).fetchall()
    assert len(rejects) == sent["rejected"]
    for line, reason, raw in rejects:
        assert lines[int(line) - 1] == raw
        assert reason.startswith("negative unit price"), reason
    consume(stream, lake, work)
    assert_same_totals(reference_totals(con, source), lake_totals(con, lake))


def append_raw_record(stream, shard, partition_key, data):
    """Appends one record to an embedded stream's log, written from its documented format
    independently of our Rust code: u32 length | u32 CRC-32 | i64 arrival ms | u16 key length | key | data."""
    key = partition_key.encode()
    body = struct.pack("<qH", 1_323_400_000_000, len(key)) + key + data
    with open(stream / f"{shard}.log", "ab") as log:
        log.write(struct.pack("<II", len(body), zlib.crc32(body)) + body)


def test_malformed_records_are_quarantined_with_their_reason(work):
    source = SAMPLES / "prasad4edu-DSDoc/Online Retail.csv"
    stream, lake = work / "stream", work / "lake"
    sent = produce(source, stream, work, "--shards", "1")
    append_raw_record(stream, "shardId-000000000000", "poison", b"{\"event_id\": 42}")
    append_raw_record(stream, "shardId-000000000000", "poison", b"\xff\xfe not json")
    consumed = consume(stream, lake, work)
    assert consumed["counts"]["quarantined"] == 2
    assert consumed["counts"]["accepted"] == sent["events_sent"]
    quarantined = [json.loads(line) for f in sorted(lake.glob("quarantine/year=*/month=*/day=*/*.jsonl")) for line in f.read_text().splitlines()]
    assert len(quarantined) == 2
    assert all(q["reason"].startswith("not a sales event") for q in quarantined)
    assert quarantined[0]["data_text"] == "{\"event_id\": 42}"
    assert quarantined[1]["data_text"] is None and quarantined[1]["data_base64"]


def normal(value):
    """Numbers compare by value (JSON may carry decimals as numbers or strings), the rest as text."""
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return str(value)


def test_the_query_files_give_the_same_answer_locally_and_in_duckdb(work):
    source = SAMPLES / "Ahmed-878-Ghazaly-s-Public-Repo-/Online_Retail.csv"
    stream, lake = work / "stream", work / "lake"
    produce(source, stream, work)
    consume(stream, lake, work)
    con = connect()
    for table in ["daily_sales", "customer_sales"]:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{lake}/{table}/*/*/*/*.parquet', hive_partitioning = true)")
    # The poller wrote the shipped regions table into the lake.
    con.execute(f"CREATE VIEW regions AS SELECT * FROM read_csv('{lake}/regions/regions.csv', header = true, all_varchar = true)")
    cases = [
        ("daily_sales_by_country.sql", ["United Kingdom", "2011-11-28", "2011-12-05"]),
        ("top_products_by_country.sql", []),
        ("customer_totals.sql", ["2011-11-28", "2011-12-05"]),
        ("sales_by_region.sql", ["2011-11-28", "2011-12-05"]),
    ]
    for name, params in cases:
        sql = (ROOT / "queries" / name).read_text()
        args = [BIN / "consumer", "query", "--lake", f"file://{lake}", "--file", ROOT / "queries" / name, "--format", "json"]
        for p in params:
            args += ["--param", p]
        ours = [json.loads(line) for line in run(*args).stdout.splitlines() if line.strip()]
        cursor = con.execute(sql, params)
        columns = [d[0] for d in cursor.description]
        theirs = [dict(zip(columns, row)) for row in cursor.fetchall()]
        assert len(ours) == len(theirs) > 0, name

        for a, b in zip(ours, theirs):
            assert {k: normal(v) for k, v in a.items()} == {k: normal(v) for k, v in b.items()}, name
        if name == "customer_totals.sql":
            # And the same answer from the source CSV, orders being distinct invoices.
            expected = reference_customer_totals(con, source, *params, encoding="latin-1")
            got = {
                (row["customer_id"], row["country"]): tuple(
                    normal(row[c]) for c in ["orders", "order_lines", "net_quantity", "net_revenue"]
                )
                for row in ours
            }
            assert got == {k: tuple(normal(v) for v in values) for k, values in expected.items()}
            assert ("", "United Kingdom") in got, "lines without a customer are kept"


def test_every_country_of_the_samples_has_a_region():
    con = connect()
    regions = {row[0] for row in con.execute(
        "SELECT country FROM read_csv($p, header = true, all_varchar = true)",
        {"p": str(ROOT / "reference" / "regions.csv")},
    ).fetchall()}
    for relative, delim, encoding in [p.values for p in REAL_SAMPLES]:
        countries = {row[0] for row in con.execute(
            """SELECT DISTINCT trim(Country) FROM read_csv($path, delim = $delim, header = true,
                   all_varchar = true, encoding = $encoding, null_padding = true)
               WHERE coalesce(trim(Country), '') <> ''""",
            {"path": str(SAMPLES / relative), "delim": delim, "encoding": encoding},
        ).fetchall()}
        assert countries, relative
        assert not countries - regions, f"{relative}: no region for {sorted(countries - regions)}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["producer", "--input", "no-such.csv", "--stream", "file://s"], "cannot open input no-such.csv"),
        (["producer", "--input", "x.csv", "--stream", "sqs://q"], "unsupported stream location"),
        (["producer", "--input", "-", "--stream", "file://s", "--shards", "0"], "0 is not in 1..=1024"),
        (["producer", "--input", "x.csv", "--stream", "file://s", "--compression", "compact"], "--aggregate"),
        (["consumer", "poll", "--stream", "file://no-stream-here", "--lake", "lake", "--until-drained"], "no stream at no-stream-here"),
        (["consumer", "query", "--lake", "no-lake-here", "SELECT 1"], "no lake at no-lake-here"),
        (["consumer", "query", "--lake", ".", "SELEC nonsense"], "error"),
        (["consumer", "query", "--lake", ".", "SELECT ?"], "1 `?` parameters but 0 values"),
    ],
)
def test_bad_input_gets_one_clear_error(work, args, message):
    result = run(BIN / args[0], *args[1:], check=False, cwd=work)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "panicked" not in result.stderr and "RUST_BACKTRACE" not in result.stderr


def test_a_file_with_the_wrong_header_is_refused_clearly(work):
    bad = work / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    result = run(BIN / "producer", "--input", bad, "--stream", f"file://{work / 's'}", check=False)
    assert result.returncode == 1
    assert "has no column for invoice_no" in result.stderr and "--columns" in result.stderr


def test_two_different_files_of_one_name_both_count_and_the_same_file_twice_counts_once(work):
    from test_kinesis import generated
    from test_poll import summed

    folders = {name: work / name for name in ("jan", "feb", "jan-copy")}
    for folder in folders.values():
        folder.mkdir()
    shutil.move(generated(work, 1_200, seed=51), folders["jan"] / "sales.csv")
    shutil.move(generated(work, 1_300, seed=52), folders["feb"] / "sales.csv")
    shutil.copy(folders["jan"] / "sales.csv", folders["jan-copy"] / "sales.csv")
    stream, lake = work / "stream", work / "lake"
    sent = [produce(folders[name] / "sales.csv", stream, work) for name in ("jan", "feb", "jan-copy")]
    consumed = consume(stream, lake, work)
    assert consumed["counts"]["accepted"] == sent[0]["events_sent"] + sent[1]["events_sent"]
    assert consumed["counts"]["duplicates"] == sent[2]["events_sent"], "the copy is the same file"
    con = connect()
    expected = summed(reference_totals(con, folders["jan"] / "sales.csv"),
                      reference_totals(con, folders["feb"] / "sales.csv"))
    assert_same_totals(expected, lake_totals(con, lake))
    sources = {row[0] for row in con.execute(
        "SELECT DISTINCT split_part(source, ':', 1) FROM read_parquet($g)",
        {"g": f"{lake}/sales_events/*/*/*/*.parquet"}).fetchall()}
    assert sources == {"sales.csv"}, "the source field keeps the file's name"


def test_standard_input_needs_a_source_id(work):
    result = subprocess.run([str(BIN / "producer"), "--input", "-", "--stream", f"file://{work / 's'}"],
                            input="InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                                  "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom\n",
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "standard input needs --source-id" in result.stderr, result.stderr
    assert "panicked" not in result.stderr


def first_line_then_close(*args, cwd=None):
    """Runs a command into a pipe whose reader takes one line and goes, as `| head -1` does."""
    process = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    line = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return line.decode(), process.wait(timeout=120), stderr


def test_a_closed_standard_output_ends_every_command_quietly(work):
    line, code, stderr = first_line_then_close(BIN / "producer", "generate", "--rows", "500000", "--seed", "4")
    assert line.startswith("InvoiceNo"), line
    assert (code, "error" in stderr.lower(), "panicked" in stderr) == (0, False, False), stderr
    stream, lake = work / "stream", work / "lake"
    produce(SAMPLES / "Ahmed-878-Ghazaly-s-Public-Repo-/Online_Retail.csv", stream, work)
    consume(stream, lake, work)
    line, code, stderr = first_line_then_close(
        BIN / "consumer", "query", "--lake", f"file://{lake}", "--format", "csv",
        "SELECT * FROM sales_events")
    assert line and (code, stderr) == (0, ""), stderr


def test_rejected_rows_go_beside_their_input(work):
    folder, elsewhere = work / "exports", work / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    source = folder / "generated.csv"
    run(BIN / "producer", "generate", "--rows", "30000", "--seed", "3", "--output", source)
    run(BIN / "producer", "--input", source, "--stream", f"file://{work / 'stream'}", cwd=elsewhere)
    rejects = folder / "generated.csv.rejects.csv"
    assert rejects.exists() and len(rejects.read_text().splitlines()) > 1
    assert list(elsewhere.iterdir()) == [], "nothing lands in the working directory"


def rewrite_dates_day_first(source, target, encoding):
    """The same rows with every InvoiceDate written day first, as a UK export has them."""
    import csv
    import re

    with open(source, newline="", encoding=encoding) as f:
        rows = list(csv.reader(f))
    column = rows[0].index("InvoiceDate")
    for row in rows[1:]:
        if len(row) > column:
            row[column] = re.sub(r"^(\d{1,2})([/-])(\d{1,2})\2", r"\3\2\1\2", row[column])
    with open(target, "w", newline="", encoding=encoding) as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)


def test_day_first_dates_are_detected_and_the_summary_says_so(work):
    original = SAMPLES / "Ahmed-878-Ghazaly-s-Public-Repo-/Online_Retail.csv"
    uk = work / "uk-export.csv"
    rewrite_dates_day_first(original, uk, "latin-1")
    assert "25/11/11" in uk.read_text(encoding="latin-1")
    stream, lake = work / "stream", work / "lake"
    result = run(BIN / "producer", "--input", uk, "--stream", f"file://{stream}", "--rejects", work / "rejects.csv")
    assert "dates read day first (detected)" in result.stdout, result.stdout
    consume(stream, lake, work)
    con = connect()
    assert_same_totals(reference_totals(con, original, ",", "latin-1"), lake_totals(con, lake))


def test_dates_that_cannot_tell_their_order_are_reported_once_with_the_format_to_pass(work):
    original = SAMPLES / "prasad4edu-DSDoc/Online Retail.csv"
    uk = work / "uk-1-december.csv"
    rewrite_dates_day_first(original, uk, "utf-8")  # every date is 1/12/2010: day 1 of month 12
    stream, lake = work / "stream", work / "lake"
    result = run(BIN / "producer", "--input", uk, "--stream", f"file://{stream}", "--dry-run")
    assert result.stderr.count("--date-format") == 1, result.stderr
    assert "dates read month first (assumed: no date settles it)" in result.stdout
    result = run(BIN / "producer", "--input", uk, "--stream", f"file://{stream}", "--date-format", "%d/%m/%Y %H:%M")
    assert "dates read as --date-format says" in result.stdout
    consume(stream, lake, work)
    con = connect()
    assert_same_totals(reference_totals(con, original), lake_totals(con, lake))


def test_a_windows_1252_export_keeps_its_euro_signs_and_quotes(work):
    text = ("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\r\n"
            "536365,85123A,\u20ac5 VOUCHER \u2018GIFT\u2019,6,12/1/2010 8:26,2.55,17850,United Kingdom\r\n"
            "536366,22633,HAND WARMER \u2013 UNION JACK,6,12/1/2010 8:28,1.85,17850,United Kingdom\r\n")
    source = work / "windows.csv"
    source.write_bytes(text.encode("cp1252"))
    stream, lake = work / "stream", work / "lake"
    produce(source, stream, work)
    consume(stream, lake, work)
    descriptions = sorted(row[0] for row in connect().execute(
        "SELECT description FROM read_parquet($g)", {"g": f"{lake}/sales_events/*/*/*/*.parquet"}).fetchall())
    assert descriptions == ["HAND WARMER \u2013 UNION JACK", "\u20ac5 VOUCHER \u2018GIFT\u2019"]
    # Named, the same bytes read as ISO-8859-15 give what that encoding says (0xA4 is its euro).
    latin9 = work / "latin9.csv"
    latin9.write_bytes(text.replace("\u2018", "").replace("\u2019", "").replace("\u2013", "-").encode("iso-8859-15"))
    produce(latin9, work / "stream9", work, "--encoding", "iso-8859-15")
    consume(work / "stream9", work / "lake9", work)
    descriptions = sorted(row[0] for row in connect().execute(
        "SELECT description FROM read_parquet($g)", {"g": f"{work / 'lake9'}/sales_events/*/*/*/*.parquet"}).fetchall())
    assert descriptions == ["HAND WARMER - UNION JACK", "\u20ac5 VOUCHER GIFT"]


def test_several_inputs_and_a_glob_stream_in_one_run_each_its_own_source(work):
    from test_kinesis import generated

    exports = work / "exports"
    exports.mkdir()
    for month, seed in [("jan", 61), ("feb", 62)]:
        shutil.move(generated(work, 2_000, seed=seed), exports / f"{month}.csv")
    # An earlier run's rejects file matches the pattern too; it is never taken for an input.
    (exports / "jan.csv.rejects.csv").write_text("line,reason,raw\n")
    real = SAMPLES / "prasad4edu-DSDoc/Online Retail.csv"
    stream, lake = work / "stream", work / "lake"
    summary = work / "summary.json"
    result = run(BIN / "producer", "--input", f"{exports}/*.csv", "--input", real,
                 "--stream", f"file://{stream}", "--summary-json", summary)
    lines = result.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines if " -> " in line] == [
        str(exports / "feb.csv"), str(exports / "jan.csv"), str(real), "3 inputs"], result.stdout
    sent = json.loads(summary.read_text())
    assert sent["rows_read"] == 2_000 + 2_000 + data_lines(real)
    assert sent["rows_read"] == sent["events_sent"] + sent["rejected"] + sent["blank"]
    consumed = consume(stream, lake, work)
    assert consumed["counts"]["accepted"] == sent["events_sent"]
    con = connect()
    from test_poll import summed
    expected = summed(*(reference_totals(con, path) for path in (exports / "jan.csv", exports / "feb.csv", real)))
    assert_same_totals(expected, lake_totals(con, lake))
    for args, message in [
        (["--input", f"{exports}/*.tsv"], "no file matches"),
        (["--input", exports / "jan.csv", "--input", "-"], "standard input (-) is read alone"),
        (["--input", exports / "jan.csv", "--input", real, "--skip-rows", "5"], "--skip-rows applies to one input"),
    ]:
        failed = run(BIN / "producer", *args, "--stream", f"file://{stream}", check=False)
        assert failed.returncode != 0 and message in failed.stderr, failed.stderr


def on_a_terminal(*args):
    """Runs a command with its stderr on a pseudo-terminal: what a user at a terminal sees."""
    import os
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    stdout = process.stdout.read().decode()
    assert process.wait(timeout=300) == 0, seen.decode(errors="replace")
    return stdout, seen.decode(errors="replace")


def test_poll_compact_and_replay_show_progress_on_a_terminal(work):
    from test_kinesis import generated

    source = generated(work, 60_000, seed=71)
    stream, lake = work / "stream", work / "lake"
    produce(source, stream, work)
    lake_url = f"file://{lake}"
    _, shown = on_a_terminal(BIN / "consumer", "poll", "--stream", f"file://{stream}", "--lake", lake_url,
                             "--until-drained", "--batch-size", "2000")
    assert "records (" in shown and "batches" in shown, shown
    _, shown = on_a_terminal(BIN / "consumer", "compact", "--lake", lake_url, "--touched")
    assert "days (" in shown and "left" in shown, shown
    _, shown = on_a_terminal(BIN / "consumer", "replay", "--stream", f"file://{stream}", "--lake", lake_url,
                             "--from-timestamp", "1970-01-01T00:00:00Z")
    assert "records (" in shown and "written again" in shown, shown

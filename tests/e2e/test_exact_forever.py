"""An event id counted once is never counted again: however much later or after however many
other events it is re-sent, across shard splits and merges, for the poller and for the Lambda
function, before and after compaction. Totals are DuckDB's, from the source CSV."""

import json

from conftest import BIN, SAMPLES, consume, download_lake, produce, run
from kinesis_events import event_record
from kinesis_reader import wait_active
from reference import assert_same_totals, connect, lake_totals, reference_totals
from test_kinesis import generated, produce_to_kinesis, unique
from test_poll import poll

SAMPLE = SAMPLES / "prasad4edu-DSDoc/Online Retail.csv"


def lake_rows(con, lake):
    return con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($g)",
                       {"g": f"{lake}/sales_events/*/*/*/*.parquet"}).fetchone()


def test_600000_rows_streamed_twice_with_the_defaults_count_once_before_and_after_compaction(work):
    source = generated(work, 600_000, seed=5)
    stream, lake = work / "stream", work / "lake"
    first = produce(source, stream, work)
    consumed = consume(stream, lake, work)
    assert consumed["counts"]["accepted"] == first["events_sent"] > 590_000
    again = produce(source, stream, work)
    assert again["events_sent"] == first["events_sent"]
    second = consume(stream, lake, work)
    assert second["counts"]["accepted"] == 0
    assert second["counts"]["duplicates"] == first["events_sent"]

    con = connect()
    expected = reference_totals(con, source)
    assert_same_totals(expected, lake_totals(con, lake))
    assert lake_rows(con, lake) == (first["events_sent"], first["events_sent"])
    # Every day the two runs touched (2010 to 2012 sale dates, not wall-clock yesterday).
    run(BIN / "consumer", "compact", "--lake", f"file://{lake}", "--touched")
    assert_same_totals(expected, lake_totals(con, lake))
    assert lake_rows(con, lake) == (first["events_sent"], first["events_sent"])


def split_first_shard(kinesis, stream):
    parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
    low, high = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2))
    wait_active(kinesis, stream)


def merge_split_children(kinesis, stream):
    """Merges the two open shards made by the split back into one."""
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    children = sorted((s for s in shards if "ParentShardId" in s and "EndingSequenceNumber" not in s["SequenceNumberRange"]),
                      key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    assert len(children) == 2, shards
    kinesis.merge_shards(StreamName=stream, ShardToMerge=children[0]["ShardId"],
                         AdjacentShardToMerge=children[1]["ShardId"])
    wait_active(kinesis, stream)


def test_a_split_and_a_merge_between_sends_of_one_file_count_nothing_twice_through_the_poller(
        kinesis, kinesalite, moto, s3, bucket, work):
    stream = unique("reshard-poll")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    wait_active(kinesis, stream)
    lake = f"s3://{bucket}/lake"
    sent, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work)
    first, _ = poll(stream, lake, kinesalite, moto, work, "--batch-size", 300)
    assert first["counts"]["accepted"] == sent["events_sent"]
    for reshard, packing in [(split_first_shard, []), (merge_split_children, ["--aggregate"])]:
        reshard(kinesis, stream)
        produce_to_kinesis(SAMPLE, stream, kinesalite, work, *packing)
        again, result = poll(stream, lake, kinesalite, moto, work, "--batch-size", 300)
        assert again["counts"]["accepted"] == 0, result.stderr
        assert again["counts"]["duplicates"] == sent["events_sent"], result.stderr
    assert again["shards"] == 5, "2 shards, one split in two, the two merged in one"

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    assert_same_totals(reference_totals(con, SAMPLE), lake_totals(con, work / "lake"))
    assert lake_rows(con, work / "lake") == (sent["events_sent"], sent["events_sent"])


def deliver(kinesis, stream, function, delivered, work, batch=250):
    """Hands every record not delivered yet to the function, shard by shard and parents first, as
    the event source mapping does; the counts the function reported."""
    arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"
    # Shard ids rise with creation, so a parent's comes before its children's.
    shards = sorted(s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"])
    counts = {"accepted": 0, "duplicates": 0}
    for shard in shards:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [r for r in page["Records"] if int(r["SequenceNumber"]) > delivered.get(shard, -1)]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        for start in range(0, len(records), batch):
            chunk = records[start:start + batch]
            events = []
            for record in chunk:
                event = event_record(int(record["SequenceNumber"]), record["PartitionKey"], record["Data"],
                                     record["ApproximateArrivalTimestamp"].timestamp())
                event.update(eventID=f"{shard}:{record['SequenceNumber']}", eventSourceARN=arn)
                events.append(event)
            path = work / "event.json"
            path.write_text(json.dumps({"Records": events}))
            response, _ = function.invoke(path)
            assert response == {"batchItemFailures": []}, function.output()
            delivered[shard] = int(chunk[-1]["SequenceNumber"])
            report = [json.loads(line) for line in function.output().splitlines()
                      if line.startswith("{") and "_aws" in line][-1]
            counts["accepted"] += report["Accepted"]
            counts["duplicates"] += report["Duplicates"]
    return counts


def test_a_split_and_a_merge_between_sends_of_one_file_count_nothing_twice_through_the_lambda(
        kinesis, kinesalite, s3, bucket, work, function_for):
    stream = unique("reshard-lambda")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    wait_active(kinesis, stream)
    function = function_for(f"s3://{bucket}/lake")
    delivered = {}
    sent, _ = produce_to_kinesis(SAMPLE, stream, kinesalite, work)
    assert deliver(kinesis, stream, function, delivered, work)["accepted"] == sent["events_sent"]
    for reshard, packing in [(split_first_shard, []), (merge_split_children, ["--aggregate"])]:
        reshard(kinesis, stream)
        produce_to_kinesis(SAMPLE, stream, kinesalite, work, *packing)
        counts = deliver(kinesis, stream, function, delivered, work)
        assert counts == {"accepted": 0, "duplicates": sent["events_sent"]}, function.output()
    assert len(delivered) == 5

    download_lake(s3, bucket, "lake/", work / "lake")
    con = connect()
    assert_same_totals(reference_totals(con, SAMPLE), lake_totals(con, work / "lake"))
    assert lake_rows(con, work / "lake") == (sent["events_sent"], sent["events_sent"])
    # A cold instance (its checkpoints and index segments read from the lake) agrees.
    cold = function_for(f"s3://{bucket}/lake")
    produce_to_kinesis(SAMPLE, stream, kinesalite, work)
    assert deliver(kinesis, stream, cold, delivered, work) == {"accepted": 0, "duplicates": sent["events_sent"]}

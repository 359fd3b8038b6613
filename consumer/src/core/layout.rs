//! Where things live in the lake (DESIGN.md, "The lake"). Every key is relative to the lake root.

use chrono::{Datelike, NaiveDate};

/// One row per accepted event.
pub const SALES_EVENTS: &str = "sales_events";
/// Per-batch daily aggregates per country and product.
pub const DAILY_SALES: &str = "daily_sales";
/// Per-batch daily aggregates per customer, country and invoice.
pub const CUSTOMER_SALES: &str = "customer_sales";
/// The Parquet tables of accepted events, each partitioned by sale date: what a batch writes and
/// compaction rewrites, the events first.
pub const TABLES: [&str; 3] = [SALES_EVENTS, DAILY_SALES, CUSTOMER_SALES];
/// The country → region reference table, one CSV object ([`regions_file`]).
pub const REGIONS: &str = "regions";
/// Records the consumer could not accept, by arrival date.
pub const QUARANTINE: &str = "quarantine";
/// The consumer's commit state; not a table.
pub const STATE: &str = "_state";

/// `table/year=YYYY/month=MM/day=DD`, zero-padded as Athena's partition projection expects.
pub fn partition_dir(table: &str, date: NaiveDate) -> String {
    format!(
        "{table}/year={:04}/month={:02}/day={:02}",
        date.year(),
        date.month(),
        date.day()
    )
}

/// The one object of the `regions` table.
pub fn regions_file() -> String {
    format!("{REGIONS}/regions.csv")
}

/// The object of one batch in one partition.
pub fn data_file(table: &str, date: NaiveDate, batch_name: &str, extension: &str) -> String {
    format!("{}/{batch_name}.{extension}", partition_dir(table, date))
}

/// `<stream>-shardId-000000000001-<first sequence number>-<generation>`: deterministic for the
/// commit state it belongs to (a stream's shard, or a replay of it), the batch's first record
/// and the state generation of its intent. The generation is unique to each attempt that won the
/// intent's compare-and-swap within that state, so a writer that lost the shard afterwards can
/// remove its own files without touching the winner's (see [`crate::commit`]); the stream's
/// name keeps two states (two streams in one lake, or a stream and its replay) from ever naming
/// the same file.
pub fn batch_name(
    stream_name: &str,
    shard_id: &str,
    first_sequence_number: &str,
    generation: u64,
) -> String {
    format!("{stream_name}-{shard_id}-{first_sequence_number}-{generation}")
}

/// The commit state of one shard of one stream.
pub fn shard_state(stream_name: &str, shard_id: &str) -> String {
    format!("{STATE}/{stream_name}/{shard_id}.json")
}

/// The folder of a shard's objects besides its state (its id index).
pub fn shard_objects(stream_name: &str, shard_id: &str) -> String {
    format!("{STATE}/{stream_name}/{shard_id}")
}

/// The segment of a shard's id index for `date` that the commit of intent generation
/// `generation` wrote (see [`crate::commit::index`]).
pub fn id_segment(stream_name: &str, shard_id: &str, date: NaiveDate, generation: u64) -> String {
    format!("{STATE}/{stream_name}/{shard_id}/ids/{date}/{generation:020}.ids")
}

/// The compaction record of `date` (see [`crate::commit::compact`]).
pub fn compaction(date: NaiveDate) -> String {
    format!("{STATE}/compaction/{date}.json")
}

/// How far `consumer compact --touched` has compacted each shard's batches.
pub fn compaction_cursor() -> String {
    format!("{STATE}/compaction/touched.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_zero_padded_by_date() {
        let date = NaiveDate::from_ymd_opt(2011, 1, 9).expect("date");
        assert_eq!(
            partition_dir(DAILY_SALES, date),
            "daily_sales/year=2011/month=01/day=09"
        );
        assert_eq!(
            data_file(
                SALES_EVENTS,
                date,
                &batch_name("sales", "shardId-000000000003", "1234", 7),
                "parquet"
            ),
            "sales_events/year=2011/month=01/day=09/sales-shardId-000000000003-1234-7.parquet"
        );
        assert_eq!(
            shard_state("demo", "shardId-000000000000"),
            "_state/demo/shardId-000000000000.json"
        );
    }
}

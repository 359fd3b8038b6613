//! Records the consumer could not accept, kept with the reason, as JSON lines.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use sales_stream::StreamRecord;
use serde::{Deserialize, Serialize};

/// One quarantined record: everything needed to see what was wrong and to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    /// For an event inside an aggregated record, its position there (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_record: Option<usize>,
    pub arrival_time: DateTime<Utc>,
    pub reason: String,
    /// The record's data, when it is UTF-8 text.
    pub data_text: Option<String>,
    /// The record's data, always, byte for byte.
    pub data_base64: String,
}

impl QuarantinedRecord {
    /// A whole stream record.
    pub fn new(shard_id: &str, record: &StreamRecord, reason: String) -> Self {
        Self::part(
            shard_id,
            record,
            None,
            &record.partition_key,
            &record.data,
            reason,
        )
    }

    /// One event of a stream record: the record itself, or one user record of an aggregate.
    pub fn part(
        shard_id: &str,
        record: &StreamRecord,
        sub_record: Option<usize>,
        partition_key: &str,
        data: &[u8],
        reason: String,
    ) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            sequence_number: record.sequence_number.to_string(),
            partition_key: partition_key.to_owned(),
            sub_record,
            arrival_time: record.approximate_arrival,
            reason,
            data_text: std::str::from_utf8(data).ok().map(str::to_owned),
            data_base64: STANDARD.encode(data),
        }
    }
}

/// Encodes quarantined records as JSON lines.
pub fn encode(records: &[&QuarantinedRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        // Strings and a timestamp only: serialising cannot fail.
        let _ = serde_json::to_writer(&mut out, record);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sales_stream::SequenceNumber;

    #[test]
    fn keeps_the_bytes_and_the_reason() {
        let record = StreamRecord {
            sequence_number: SequenceNumber::from_u64(7),
            partition_key: "k".into(),
            data: vec![0xff, b'{'],
            approximate_arrival: DateTime::from_timestamp_millis(0).expect("time"),
        };
        let q = QuarantinedRecord::new("shardId-000000000000", &record, "not json".into());
        assert_eq!(q.data_text, None);
        let line = encode(&[&q]);
        let back: QuarantinedRecord = serde_json::from_slice(line.trim_ascii_end()).expect("json");
        assert_eq!(
            STANDARD.decode(back.data_base64).expect("base64"),
            vec![0xff, b'{']
        );
        assert_eq!(back.reason, "not json");
    }
}

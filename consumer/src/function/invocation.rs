//! What the function is invoked with: a Kinesis batch, a request to compact days, or a request
//! for a report.

use std::fmt;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use chrono::NaiveDate;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::commands::report::ReportRequest;
use crate::commit::compact::Days;

/// Why an event could not be handled at all (as opposed to records that failed).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A record lacks what every Kinesis event record has.
    #[error("record {index} of the event: {reason}")]
    BadRecord { index: usize, reason: String },
    /// The event is neither a Kinesis batch nor a compaction request.
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
}

/// What the function was invoked with.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// A batch from the Kinesis event source mapping.
    Kinesis(KinesisEvent),
    /// Compact days: an EventBridge scheduled event (every day touched since the last scheduled
    /// run), `{"action": "compact", "day": "YYYY-MM-DD"}`, `{"action": "compact", "from": …,
    /// "to": …}` or `{"action": "compact"}` (touched days).
    Compact(Days),
    /// One country's daily sales as a CSV under `{lake}/reports/`, its location published to the
    /// report topic: `{"action": "report", "country": …, "from": "YYYY-MM-DD", "to": …}`.
    Report(ReportRequest),
}

/// What the function is invoked with, for a payload that is none of it.
const EXPECTED: &str = "expected a Kinesis event, an EventBridge scheduled event, \
                        {\"action\": \"compact\"} or {\"action\": \"report\"}";

/// A payload as read: a Kinesis event's `Records` in their type, any other member as JSON.
///
/// Read by hand rather than derived with `#[serde(flatten)]` for the other members: serde reads a
/// flattened struct by first buffering every member, the records included, into its own generic
/// form, which is the copy this type is here to avoid.
struct Payload {
    records: Option<Vec<KinesisEventRecord>>,
    members: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = Payload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
                let mut payload = Payload {
                    records: None,
                    members: Map::new(),
                };
                while let Some(name) = map.next_key::<String>()? {
                    if name == "Records" {
                        payload.records = Some(map.next_value()?);
                    } else {
                        payload.members.insert(name, map.next_value()?);
                    }
                }
                Ok(payload)
            }
        }

        deserializer.deserialize_map(Members)
    }
}

impl Invocation {
    /// Reads the payload the runtime hands over, as JSON text.
    ///
    /// A Kinesis batch's records go straight into their type. Read into a `serde_json::Value`
    /// first (by the runtime, through `serde_path_to_error`) and converted, a 10,000-record event
    /// of 9.4 MB took 39-60 ms before the batch began, more than twice the batch itself; taken as
    /// text and read from it, 20-41 ms (the two taken in turns on the bench machine).
    pub fn from_json(text: &str) -> Result<Self, EventError> {
        let payload: Payload = serde_json::from_str(text).map_err(|e| {
            if text.trim_start().starts_with('{') {
                EventError::Unrecognised(format!("not a Kinesis event: {e}"))
            } else {
                EventError::Unrecognised(EXPECTED.to_owned())
            }
        })?;
        if let Some(records) = payload.records {
            let mut event = KinesisEvent::default();
            event.records = records;
            return Ok(Self::Kinesis(event));
        }
        Self::from_members(&payload.members)
    }

    /// An invocation other than a Kinesis batch, from the payload's members.
    fn from_members(payload: &Map<String, Value>) -> Result<Self, EventError> {
        let unrecognised = |why: &str| EventError::Unrecognised(why.to_owned());
        if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
            return Ok(Self::Compact(Days::Touched));
        }
        if payload.get("action").and_then(Value::as_str) == Some("compact") {
            let date = |name: &str| -> Result<Option<NaiveDate>, EventError> {
                match payload.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(value) => value
                        .as_str()
                        .and_then(|d| d.parse::<NaiveDate>().ok())
                        .map(Some)
                        .ok_or_else(|| {
                            EventError::Unrecognised(format!(
                                "compact: \"{name}\" must be a date, YYYY-MM-DD"
                            ))
                        }),
                }
            };
            return match (date("day")?, date("from")?, date("to")?) {
                (Some(day), None, None) => Ok(Self::Compact(Days::One(day))),
                (None, Some(from), Some(to)) => Ok(Self::Compact(Days::Range { from, to })),
                (None, None, None) => Ok(Self::Compact(Days::Touched)),
                _ => Err(unrecognised(
                    "compact takes \"day\", or \"from\" and \"to\", or neither (touched days)",
                )),
            };
        }
        if payload.get("action").and_then(Value::as_str) == Some("report") {
            let text = |name: &str| payload.get(name).and_then(Value::as_str);
            let date = |name: &str| text(name).and_then(|d| d.parse::<NaiveDate>().ok());
            let (Some(country), Some(from), Some(to)) = (text("country"), date("from"), date("to"))
            else {
                return Err(unrecognised(
                    "report takes \"country\", and \"from\" and \"to\" as dates, YYYY-MM-DD",
                ));
            };
            return ReportRequest::new(country, from, to)
                .map(Self::Report)
                .map_err(|e| EventError::Unrecognised(format!("report: {e}")));
        }
        Err(unrecognised(EXPECTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Invocation, EventError> {
        Invocation::from_json(json)
    }

    #[test]
    fn a_report_request_is_read_and_checked() {
        let Ok(Invocation::Report(request)) = parse(
            r#"{"action":"report","country":"United Kingdom","from":"2011-12-01","to":"2011-12-09"}"#,
        ) else {
            panic!("a report request");
        };
        assert_eq!(request.country, "United Kingdom");
        assert_eq!(request.to.to_string(), "2011-12-09");
        for bad in [
            r#"{"action":"report","country":"France","from":"2011-12-01"}"#,
            r#"{"action":"report","country":"France","from":"2011-13-01","to":"2011-12-09"}"#,
            r#"{"action":"report","country":"France","from":"2011-12-09","to":"2011-12-01"}"#,
            r#"{"action":"report","from":"2011-12-01","to":"2011-12-09"}"#,
        ] {
            let error = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("report"), "{bad}: {error}");
        }
    }

    fn batch() -> String {
        let path = format!(
            "{}/../tests/fixtures/kinesis/batch.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_kinesis_batch_is_read_as_aws_lambda_events_reads_it() {
        let text = batch();
        let expected: KinesisEvent = serde_json::from_str(&text).expect("a Kinesis event");
        assert!(expected.records.len() > 1);
        let Ok(Invocation::Kinesis(event)) = parse(&text) else {
            panic!("a Kinesis batch");
        };
        assert_eq!(event, expected);
        // Other members, before or after the records, change nothing.
        let around = format!(
            r#"{{"action":"compact","Records":{},"detail-type":"x"}}"#,
            serde_json::to_string(&serde_json::from_str::<Value>(&text).expect("JSON")["Records"])
                .expect("JSON")
        );
        let Ok(Invocation::Kinesis(event)) = parse(&around) else {
            panic!("a Kinesis batch among other members");
        };
        assert_eq!(event, expected);
    }

    #[test]
    fn a_payload_that_is_no_invocation_is_one_clear_error() {
        let broken_record = batch().replacen(r#""data": ""#, r#""data": "not base64 ~"#, 1);
        for (payload, says) in [
            (broken_record.as_str(), "not a Kinesis event"),
            (r#"{"Records":{}}"#, "not a Kinesis event"),
            (
                r#"{"Records":null,"action":"compact"}"#,
                "not a Kinesis event",
            ),
            ("[1,2]", "expected a Kinesis event"),
            ("null", "expected a Kinesis event"),
            (r#"{"action":"resize"}"#, "expected a Kinesis event"),
            ("{}", "expected a Kinesis event"),
        ] {
            let error = parse(payload)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(says), "{payload:.60}: {error}");
        }
        let Ok(Invocation::Compact(Days::Touched)) =
            parse(r#"{"detail-type":"Scheduled Event","source":"aws.events"}"#)
        else {
            panic!("a scheduled compaction");
        };
    }
}

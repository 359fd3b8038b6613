//! What the function is invoked with: a Kinesis batch, a request to compact days, or a request
//! for a report.

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::NaiveDate;
use serde_json::Value;

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

impl Invocation {
    pub fn parse(payload: Value) -> Result<Self, EventError> {
        let unrecognised = |why: &str| EventError::Unrecognised(why.to_owned());
        if payload.get("Records").is_some() {
            return serde_json::from_value(payload)
                .map(Self::Kinesis)
                .map_err(|e| EventError::Unrecognised(format!("not a Kinesis event: {e}")));
        }
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
        Err(unrecognised(
            "expected a Kinesis event, an EventBridge scheduled event, {\"action\": \"compact\"} \
             or {\"action\": \"report\"}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Invocation, EventError> {
        Invocation::parse(serde_json::from_str(json).expect("JSON"))
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
}

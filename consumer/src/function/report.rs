//! The function's `report` action: the CSV of one country's days goes under `{lake}/reports/`,
//! then its location is published to the report topic, so whoever asked (or subscribed) hears
//! where it is.
//!
//! The CSV is written before the notice: a notice always names an object that exists. If the
//! publish fails the action fails and is retried by whoever invoked it; the report written
//! first stays, under its own name, and the retry writes a new one.

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use sales_stream::LakeLocation;

use crate::commands::output::to_csv;
use crate::commands::report::{ReportError, ReportRequest};
use crate::lake::{Lake, LakeError};
use crate::notify::Notifier;

/// Why a report action failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportActionError {
    /// The report itself could not be made.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The CSV could not be written to the lake.
    #[error("writing the report: {0}")]
    Lake(#[from] LakeError),
    /// The notice could not be published (the report is written).
    #[error("the report is at {location}, but its notice was not published: {reason}")]
    Notice { location: String, reason: String },
    /// The function has no report topic (REPORT_TOPIC_ARN).
    #[error("REPORT_TOPIC_ARN is not set: the function has no topic to publish reports to")]
    NoTopic,
}

/// What the action answers, and what the notice says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportNotice {
    /// The CSV: `s3://BUCKET/PREFIX/reports/...csv` (or `file://` for a local lake).
    pub report: String,
    pub country: String,
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    /// Days in the report (rows after the header).
    pub days: usize,
    pub made_at: DateTime<Utc>,
}

/// Writes the answer of `request` as a CSV under the lake's reports, then publishes its notice.
pub async fn publish_report(
    request: &ReportRequest,
    answer: &[RecordBatch],
    lake: &impl Lake,
    lake_url: &LakeLocation,
    notifier: &impl Notifier,
    made_at: DateTime<Utc>,
) -> Result<ReportNotice, ReportActionError> {
    let key = request.key(made_at);
    let csv = to_csv(answer).map_err(ReportError::from)?;
    lake.put(&key, csv).await?;
    let notice = ReportNotice {
        report: format!("{}/{key}", lake_url.to_string().trim_end_matches('/')),
        country: request.country.clone(),
        from: request.from,
        to: request.to,
        days: answer.iter().map(RecordBatch::num_rows).sum(),
        made_at,
    };
    let subject = notice_subject(request);
    let message = serde_json::to_string_pretty(&notice).unwrap_or_default();
    notifier
        .publish(&subject, &message)
        .await
        .map_err(|reason| ReportActionError::Notice {
            location: notice.report.clone(),
            reason,
        })?;
    Ok(notice)
}

/// The notice's subject: SNS takes ASCII without control characters, under 100 characters, so
/// other characters of the country's name become `?` (the message has the name as it is).
fn notice_subject(request: &ReportRequest) -> String {
    format!(
        "Sales report: {}, {} to {}",
        request.country, request.from, request.to
    )
    .chars()
    .map(|c| {
        if c.is_ascii() && !c.is_ascii_control() {
            c
        } else {
            '?'
        }
    })
    .take(99)
    .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow::array::{Date32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::lake::LocalLake;

    #[derive(Debug, Default)]
    struct Inbox {
        messages: Mutex<Vec<(String, String)>>,
        fail: bool,
    }

    impl Notifier for Inbox {
        async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
            if self.fail {
                return Err("AuthorizationError: not allowed".into());
            }
            self.messages
                .lock()
                .expect("inbox")
                .push((subject.to_owned(), message.to_owned()));
            Ok(())
        }
    }

    fn answer() -> Vec<RecordBatch> {
        let schema = Schema::new(vec![
            Field::new("sale_date", DataType::Date32, false),
            Field::new("order_lines", DataType::Int64, false),
        ]);
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![
                std::sync::Arc::new(Date32Array::from(vec![15_309, 15_310])),
                std::sync::Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .expect("batch");
        vec![batch]
    }

    #[tokio::test]
    async fn the_report_is_written_then_its_location_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        let url: LakeLocation = format!("file://{}", dir.path().display())
            .parse()
            .expect("url");
        let request = ReportRequest::new(
            "United Kingdom",
            "2011-12-01".parse().expect("date"),
            "2011-12-02".parse().expect("date"),
        )
        .expect("request");
        let made_at = "2026-11-30T10:00:00Z".parse().expect("time");
        let inbox = Inbox::default();
        let notice = publish_report(&request, &answer(), &lake, &url, &inbox, made_at)
            .await
            .expect("published");
        assert_eq!(notice.days, 2);
        let key = request.key(made_at);
        assert!(notice.report.ends_with(&key), "{}", notice.report);
        let csv = lake.get(&key).await.expect("get").expect("written").bytes;
        assert_eq!(
            String::from_utf8(csv).expect("utf-8"),
            "sale_date,order_lines\n2011-12-01,3\n2011-12-02,4\n"
        );
        let messages = inbox.messages.lock().expect("inbox").clone();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].0,
            "Sales report: United Kingdom, 2011-12-01 to 2011-12-02"
        );
        let published: ReportNotice = serde_json::from_str(&messages[0].1).expect("JSON");
        assert_eq!(published, notice);

        // A notice that cannot be published fails the action, naming the report written.
        let failing = Inbox {
            fail: true,
            ..Inbox::default()
        };
        let error = publish_report(&request, &answer(), &lake, &url, &failing, made_at)
            .await
            .expect_err("not published");
        assert!(error.to_string().contains(&key), "{error}");
    }

    #[test]
    fn subjects_are_short_ascii() {
        let request = ReportRequest::new(
            &format!("Côte d’Ivoire {}", "x".repeat(80)),
            "2011-12-01".parse().expect("date"),
            "2011-12-02".parse().expect("date"),
        )
        .expect("request");
        let subject = notice_subject(&request);
        assert!(
            subject.starts_with("Sales report: C?te d?Ivoire xx"),
            "{subject}"
        );
        assert_eq!(subject.chars().count(), 99);
        assert!(subject.is_ascii());
    }
}

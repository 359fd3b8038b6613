//! Per-invocation metrics as CloudWatch embedded metric format (EMF) log lines: one JSON object
//! on stdout that CloudWatch Logs turns into metrics, with no API call and no agent.

use serde_json::{Map, Value, json};

use crate::function::InvocationReport;

/// One EMF line for an invocation, dimensioned by stream.
pub fn emf_line(namespace: &str, report: &InvocationReport, timestamp_ms: i64) -> String {
    let c = &report.counts;
    let metrics: [(&str, u64, &str); 12] = [
        ("RecordsIn", c.records, "Count"),
        ("EventsIn", c.received, "Count"),
        ("Accepted", c.accepted, "Count"),
        ("Duplicates", c.duplicates, "Count"),
        ("Quarantined", c.quarantined, "Count"),
        ("Replayed", c.replayed, "Count"),
        ("Conflicts", report.conflicts, "Count"),
        ("FailedRecords", report.failed_records, "Count"),
        ("Shards", report.shards as u64, "Count"),
        ("Files", report.files, "Count"),
        ("Bytes", report.bytes, "Bytes"),
        ("Duration", report.duration_ms, "Milliseconds"),
    ];
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Stream"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert("Stream".into(), Value::from(report.streams.join(",")));
    for (name, value, _) in metrics {
        line.insert(name.into(), Value::from(value));
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_declared_and_valued() {
        let report = InvocationReport {
            streams: vec!["sales".into()],
            files: 3,
            ..InvocationReport::default()
        };
        let line: Value = serde_json::from_str(&emf_line("SalesLake", &report, 1_700_000_000_000))
            .expect("one JSON object");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "SalesLake");
        assert_eq!(directive["Dimensions"], json!([["Stream"]]));
        assert_eq!(line["Stream"], "sales");
        assert_eq!(line["Files"], 3);
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name");
            assert!(line[name].is_u64(), "{name} has a value");
        }
    }
}

//! `consumer verify`: reconciles the lake with the files that were streamed into it.
//!
//! The files are read again exactly as the producer read them (its reader, column mapping, date
//! order and event ids), each event counted once by id as the consumer does, and summed per
//! `daily_sales` key (sale_date, country, stock_code) and per `customer_sales` key (sale_date,
//! customer_id, country, invoice_no). The lake's files of both tables are summed per key the
//! same way. Every key of either side is a cell; a cell differs when a key is on one side only
//! or any of its seven sums differ. A lost batch shows as lake totals below the source, a batch
//! written twice as totals above it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use anyhow::Context;
use futures::StreamExt;
use producer::Line;
use producer::input::{InputArgs, input_paths, open_rows};

use crate::core::aggregate::{Aggregates, CustomerKey, DailyKey, Totals};
use crate::core::layout::{CUSTOMER_SALES, DAILY_SALES};
use crate::core::writer::{WriterError, read_customer_sales, read_daily_sales};
use crate::lake::{Lake, MAX_CONCURRENT_REQUESTS};

/// What the source files hold, row by row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceRows {
    /// `rows_read = events + rejected + blank`.
    pub rows_read: u64,
    pub events: u64,
    pub rejected: u64,
    pub blank: u64,
    /// Events whose id an earlier row (or file) already had: the lake counts them once.
    pub duplicates: u64,
}

/// One cell whose totals differ: `None` where the key is on that side only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference<K> {
    pub key: K,
    pub source: Option<Totals>,
    pub lake: Option<Totals>,
}

/// One table compared.
#[derive(Debug, Clone)]
pub struct TableCheck<K> {
    /// Keys compared: every key of the source and of the lake.
    pub cells: usize,
    /// The table's files read.
    pub files: usize,
    /// Every differing cell, in key order.
    pub differences: Vec<Difference<K>>,
}

impl<K> TableCheck<K> {
    fn new(files: usize, (cells, differences): (usize, Vec<Difference<K>>)) -> Self {
        Self {
            cells,
            files,
            differences,
        }
    }
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    pub rows: SourceRows,
    pub daily: TableCheck<DailyKey>,
    pub customers: TableCheck<CustomerKey>,
}

impl Reconciliation {
    /// Whether the lake holds exactly what the source files say.
    pub fn matches(&self) -> bool {
        self.daily.differences.is_empty() && self.customers.differences.is_empty()
    }
}

/// The source's sums per key of each aggregated table.
#[derive(Debug, Default)]
pub struct SourceTotals {
    pub daily: BTreeMap<DailyKey, Totals>,
    pub customers: BTreeMap<CustomerKey, Totals>,
}

/// Sums every input per key of each aggregated table, each event once by id. `source_id` is the
/// one the producer was given (one input only), as event ids derive from it.
pub fn source_totals(
    inputs: &[PathBuf],
    source_id: Option<&str>,
    read: &InputArgs,
) -> anyhow::Result<(SourceTotals, SourceRows)> {
    let mut rows = SourceRows::default();
    let mut seen = HashSet::new();
    let mut aggregates = Aggregates::default();
    let inputs = input_paths(inputs)?;
    if inputs.len() > 1 && source_id.is_some() {
        anyhow::bail!(
            "--source-id applies to one input, and {} were given: verify that input alone",
            inputs.len()
        );
    }
    for input in inputs {
        let mut opened = open_rows(&input, read, source_id)?;
        while let Some(line) = opened
            .reader
            .next_line()
            .with_context(|| format!("reading {}", input.display()))?
        {
            rows.rows_read += 1;
            let record = match line {
                Line::Blank { .. } => {
                    rows.blank += 1;
                    continue;
                }
                Line::Malformed { .. } => None,
                Line::Record(record) => Some(record),
            };
            let event = record
                .as_ref()
                .and_then(|record| opened.parser.parse(record).ok());
            // The consumer quarantines what fails its own check: neither is a sale.
            let Some(event) = event.filter(|e| e.validate().is_ok()) else {
                rows.rejected += 1;
                continue;
            };
            rows.events += 1;
            if seen.insert(event.event_id) {
                aggregates.add(&event);
            } else {
                rows.duplicates += 1;
            }
        }
    }
    let finished = aggregates.finish();
    let totals = SourceTotals {
        daily: finished
            .daily
            .into_iter()
            .map(|row| (row.key, row.totals))
            .collect(),
        customers: finished
            .customers
            .into_iter()
            .map(|row| (row.key, row.totals))
            .collect(),
    };
    Ok((totals, rows))
}

/// Sums every file of `table` in the lake per key (`read` turns a file into its keyed rows);
/// also the number of files.
pub async fn lake_totals<K: Ord>(
    lake: &impl Lake,
    table: &str,
    read: impl Fn(Vec<u8>) -> Result<Vec<(K, Totals)>, WriterError>,
) -> anyhow::Result<(BTreeMap<K, Totals>, usize)> {
    let keys: Vec<String> = lake
        .list(table)
        .await?
        .into_iter()
        .filter(|key| key.ends_with(".parquet"))
        .collect();
    let files = keys.len();
    let mut totals: BTreeMap<K, Totals> = BTreeMap::new();
    let mut objects = futures::stream::iter(keys)
        .map(|key| async move { lake.get(&key).await.map(|object| (key, object)) })
        .buffered(MAX_CONCURRENT_REQUESTS);
    while let Some(object) = objects.next().await {
        let (key, object) = object?;
        // Removed since the listing (a compaction replaced it): its rows are in the new file,
        // which the listing may not have. Verify a lake at rest.
        let Some(object) = object else {
            tracing::warn!(
                key,
                "removed while verify read the lake: run it on a lake at rest"
            );
            continue;
        };
        for (row_key, row) in read(object.bytes).with_context(|| format!("reading {key}"))? {
            totals.entry(row_key).or_default().merge(&row);
        }
    }
    Ok((totals, files))
}

/// Compares the two sides key by key: the number of cells, and those that differ.
pub fn reconcile<K: Ord + Clone>(
    source: &BTreeMap<K, Totals>,
    lake: &BTreeMap<K, Totals>,
) -> (usize, Vec<Difference<K>>) {
    let keys: BTreeSet<&K> = source.keys().chain(lake.keys()).collect();
    let differences = keys
        .iter()
        .filter_map(|key| {
            let (s, l) = (source.get(key), lake.get(key));
            (s != l).then(|| Difference {
                key: (*key).clone(),
                source: s.copied(),
                lake: l.copied(),
            })
        })
        .collect();
    (keys.len(), differences)
}

/// Reads the inputs and the lake, and compares them table by table.
pub async fn verify(
    lake: &impl Lake,
    inputs: &[PathBuf],
    source_id: Option<&str>,
    read: &InputArgs,
) -> anyhow::Result<Reconciliation> {
    let (source, rows) = source_totals(inputs, source_id, read)?;
    let (daily, daily_files) = lake_totals(lake, DAILY_SALES, |bytes| {
        Ok(read_daily_sales(bytes)?
            .into_iter()
            .map(|row| (row.key, row.totals))
            .collect())
    })
    .await?;
    let (customers, customer_files) = lake_totals(lake, CUSTOMER_SALES, |bytes| {
        Ok(read_customer_sales(bytes)?
            .into_iter()
            .map(|row| (row.key, row.totals))
            .collect())
    })
    .await?;
    Ok(Reconciliation {
        rows,
        daily: TableCheck::new(daily_files, reconcile(&source.daily, &daily)),
        customers: TableCheck::new(customer_files, reconcile(&source.customers, &customers)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn key(code: &str) -> DailyKey {
        DailyKey {
            sale_date: NaiveDate::from_ymd_opt(2011, 12, 9).expect("date"),
            country: "France".into(),
            stock_code: code.into(),
        }
    }

    fn totals(lines: i64, revenue: i128) -> Totals {
        Totals {
            order_lines: lines,
            net_revenue: revenue,
            ..Totals::default()
        }
    }

    #[test]
    fn a_cell_differs_when_missing_doubled_or_extra() {
        let source = BTreeMap::from([
            (key("A"), totals(1, 100)),
            (key("B"), totals(2, 200)),
            (key("C"), totals(3, 300)),
        ]);
        let lake = BTreeMap::from([
            (key("A"), totals(1, 100)),
            (key("B"), totals(4, 400)),
            (key("D"), totals(1, 1)),
        ]);
        let (cells, differences) = reconcile(&source, &lake);
        assert_eq!(cells, 4);
        let codes: Vec<_> = differences
            .iter()
            .map(|d| {
                (
                    d.key.stock_code.as_str(),
                    d.source.is_some(),
                    d.lake.is_some(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [("B", true, true), ("C", true, false), ("D", false, true)]
        );
        assert_eq!(reconcile(&source, &source).1, []);
    }
}

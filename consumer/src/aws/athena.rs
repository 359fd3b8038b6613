//! `consumer query` on an S3 lake: the SQL runs on Amazon Athena, over the Glue tables that
//! `make deploy` declares on the lake (`sales_events` and `daily_sales`, with partition
//! projection). The only file that speaks Athena.
//!
//! A query is started (`StartQueryExecution`, with the `?` values as `ExecutionParameters`),
//! polled with backoff until it ends (`GetQueryExecution`), and its rows read page by page
//! (`GetQueryResults`). Athena returns every value as text; [`result_batch`] types the columns by
//! the types Athena reports, so a result prints exactly as the local engine prints it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{
    ColumnInfo, QueryExecutionContext, QueryExecutionState, QueryExecutionStatistics, Row,
    StatementType,
};
use sales_aws::{RetryConfig, sdk_error_reason};

/// The workgroup `make deploy` creates (its `name` variable), which holds the results location.
pub const DEFAULT_WORKGROUP: &str = "sales-lake";
/// The Glue database `make deploy` creates.
pub const DEFAULT_DATABASE: &str = "sales_lake";
/// Glue, the catalog of every Athena account.
const CATALOG: &str = "AwsDataCatalog";
/// `GetQueryResults` returns at most 1,000 rows per page (its `MaxResults` limit).
pub const MAX_RESULTS_PER_PAGE: i32 = 1000;
/// Attempts per Athena request, the first included (throttling is retried with backoff).
const ATHENA_ATTEMPTS: u32 = 5;
/// The first wait between two status polls; it doubles up to [`MAX_POLL_INTERVAL`]. Small
/// queries end within a second, and `GetQueryExecution` is throttled per account (about 100/s).
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where and how long a query runs.
#[derive(Debug, Clone)]
pub struct AthenaOptions {
    /// The workgroup: its results location, encryption and scan limit apply.
    pub workgroup: String,
    /// The Glue database holding the lake's tables.
    pub database: String,
    /// How long to wait for the query before stopping it.
    pub timeout: Duration,
}

impl Default for AthenaOptions {
    fn default() -> Self {
        Self {
            workgroup: DEFAULT_WORKGROUP.to_owned(),
            database: DEFAULT_DATABASE.to_owned(),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Why a query on Athena gave no result.
#[derive(Debug, thiserror::Error)]
pub enum AthenaError {
    /// No usable AWS region or credentials.
    #[error(transparent)]
    Config(#[from] sales_aws::ConfigError),
    /// Athena refused to start the query: an unknown workgroup, no permission, bad parameters.
    #[error("Athena did not start the query (workgroup {workgroup}): {reason}")]
    Start { workgroup: String, reason: String },
    /// The query ran and failed (a syntax error, a missing table), or someone cancelled it.
    #[error("the query {state} on Athena (execution {id}): {reason}")]
    Failed {
        id: String,
        state: String,
        reason: String,
    },
    /// The query outlived the timeout; it was stopped.
    #[error("the query was still running after {waited:?} and was stopped (execution {id})")]
    TimedOut { id: String, waited: Duration },
    /// Polling the query or reading its results failed.
    #[error("reading query execution {id}: {reason}")]
    Results { id: String, reason: String },
    /// The rows could not be put together into a table (a bug, or a type Athena added).
    #[error("building the result table: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// What a finished query reports beside its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStatistics {
    pub execution_id: String,
    pub data_scanned_bytes: i64,
    pub engine_time_ms: i64,
    pub pages: usize,
}

/// A connected Athena client with the options of one `consumer query`.
#[derive(Debug, Clone)]
pub struct Athena {
    client: Client,
    options: AthenaOptions,
}

impl Athena {
    /// Loads the AWS configuration (the standard chain, `AWS_ENDPOINT_URL` included).
    pub async fn connect(options: AthenaOptions) -> Result<Self, AthenaError> {
        let config =
            sales_aws::load(RetryConfig::standard().with_max_attempts(ATHENA_ATTEMPTS)).await?;
        Ok(Self::new(Client::new(&config), options))
    }

    pub fn new(client: Client, options: AthenaOptions) -> Self {
        Self { client, options }
    }

    /// Runs `sql` with `parameters` (SQL literals, one per `?`) and returns its rows.
    pub async fn run(
        &self,
        sql: &str,
        parameters: Vec<String>,
    ) -> Result<(Vec<RecordBatch>, QueryStatistics), AthenaError> {
        let id = self.start(sql, parameters).await?;
        tracing::info!(execution_id = %id, workgroup = %self.options.workgroup, "query started on Athena");
        let (statement, mut statistics) = self.wait(&id).await?;
        let (columns, rows, pages) = self.results(&id, statement).await?;
        statistics.pages = pages;
        tracing::info!(
            execution_id = %id,
            rows = rows.len(),
            pages,
            data_scanned_bytes = statistics.data_scanned_bytes,
            engine_time_ms = statistics.engine_time_ms,
            "query finished"
        );
        Ok((vec![result_batch(&columns, &rows)?], statistics))
    }

    async fn start(&self, sql: &str, parameters: Vec<String>) -> Result<String, AthenaError> {
        let context = QueryExecutionContext::builder()
            .catalog(CATALOG)
            .database(&self.options.database)
            .build();
        let mut request = self
            .client
            .start_query_execution()
            .query_string(sql)
            .query_execution_context(context)
            .work_group(&self.options.workgroup);
        // An empty list is invalid: Athena takes `ExecutionParameters` only when there are any.
        if !parameters.is_empty() {
            request = request.set_execution_parameters(Some(parameters));
        }
        let started = request.send().await.map_err(|e| AthenaError::Start {
            workgroup: self.options.workgroup.clone(),
            reason: sdk_error_reason(&e),
        })?;
        started
            .query_execution_id()
            .map(str::to_owned)
            .ok_or_else(|| AthenaError::Start {
                workgroup: self.options.workgroup.clone(),
                reason: "no query execution id in the answer".to_owned(),
            })
    }

    /// Polls until the query ends; stops it when the timeout passes.
    async fn wait(
        &self,
        id: &str,
    ) -> Result<(Option<StatementType>, QueryStatistics), AthenaError> {
        let started = Instant::now();
        let mut interval = FIRST_POLL_INTERVAL;
        loop {
            let answer = self
                .client
                .get_query_execution()
                .query_execution_id(id)
                .send()
                .await
                .map_err(|e| results_error(id, sdk_error_reason(&e)))?;
            let execution = answer
                .query_execution()
                .ok_or_else(|| results_error(id, "no query execution in the answer".into()))?;
            let status = execution.status();
            let state = status.and_then(|s| s.state()).cloned();
            match state {
                Some(QueryExecutionState::Succeeded) => {
                    let statistics = statistics(id, execution.statistics());
                    return Ok((execution.statement_type().cloned(), statistics));
                }
                Some(state @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled)) => {
                    let reason = status
                        .and_then(|s| s.state_change_reason())
                        .unwrap_or("no reason given");
                    return Err(AthenaError::Failed {
                        id: id.to_owned(),
                        state: state.as_str().to_ascii_lowercase(),
                        reason: reason.to_owned(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= self.options.timeout {
                // A query left running keeps scanning (and costing): stop it.
                if let Err(e) = self
                    .client
                    .stop_query_execution()
                    .query_execution_id(id)
                    .send()
                    .await
                {
                    tracing::warn!(execution_id = %id, error = %sdk_error_reason(&e), "could not stop the query");
                }
                return Err(AthenaError::TimedOut {
                    id: id.to_owned(),
                    waited: started.elapsed(),
                });
            }
            tracing::debug!(execution_id = %id, state = ?state, "waiting for the query");
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// Every row of the result over all pages, with the column descriptions.
    async fn results(
        &self,
        id: &str,
        statement: Option<StatementType>,
    ) -> Result<(Vec<ColumnInfo>, Vec<Vec<Option<String>>>, usize), AthenaError> {
        let mut columns: Vec<ColumnInfo> = Vec::new();
        let mut rows = Vec::new();
        let mut pages = 0;
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_query_results()
                .query_execution_id(id)
                .max_results(MAX_RESULTS_PER_PAGE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| results_error(id, sdk_error_reason(&e)))?;
            pages += 1;
            let Some(result_set) = page.result_set() else {
                break;
            };
            if columns.is_empty() {
                columns = result_set
                    .result_set_metadata()
                    .map(|m| m.column_info().to_vec())
                    .unwrap_or_default();
            }
            let mut page_rows = result_set.rows().iter().map(row_values).peekable();
            // The first row of a SELECT's first page repeats the column labels.
            if pages == 1
                && statement == Some(StatementType::Dml)
                && page_rows
                    .peek()
                    .is_some_and(|first| is_label_row(first, &columns))
            {
                page_rows.next();
            }
            rows.extend(page_rows);
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        Ok((columns, rows, pages))
    }
}

fn results_error(id: &str, reason: String) -> AthenaError {
    AthenaError::Results {
        id: id.to_owned(),
        reason,
    }
}

fn statistics(id: &str, statistics: Option<&QueryExecutionStatistics>) -> QueryStatistics {
    QueryStatistics {
        execution_id: id.to_owned(),
        data_scanned_bytes: statistics
            .and_then(|s| s.data_scanned_in_bytes())
            .unwrap_or_default(),
        engine_time_ms: statistics
            .and_then(|s| s.engine_execution_time_in_millis())
            .unwrap_or_default(),
        pages: 0,
    }
}

/// A row's values; Athena leaves `VarCharValue` out for NULL.
fn row_values(row: &Row) -> Vec<Option<String>> {
    row.data()
        .iter()
        .map(|datum| datum.var_char_value().map(str::to_owned))
        .collect()
}

fn is_label_row(row: &[Option<String>], columns: &[ColumnInfo]) -> bool {
    row.len() == columns.len()
        && row.iter().zip(columns).all(|(value, column)| {
            value.as_deref() == Some(column.label().unwrap_or(column.name()))
        })
}

/// The Arrow type of an Athena (Trino) column type.
fn arrow_type(column: &ColumnInfo) -> DataType {
    match column.r#type() {
        "boolean" => DataType::Boolean,
        "tinyint" | "smallint" | "integer" | "int" | "bigint" => DataType::Int64,
        "real" | "float" | "double" => DataType::Float64,
        "decimal" => match (
            u8::try_from(column.precision()),
            i8::try_from(column.scale()),
        ) {
            (Ok(precision @ 1..=38), Ok(scale)) if scale >= 0 && scale as u8 <= precision => {
                DataType::Decimal128(precision, scale)
            }
            _ => DataType::Utf8,
        },
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => DataType::Utf8,
    }
}

/// The rows as one table typed by the columns' Athena types. A column whose text does not parse
/// as its type (a type this function does not know in a new form) stays text, never an error.
pub fn result_batch(
    columns: &[ColumnInfo],
    rows: &[Vec<Option<String>>],
) -> Result<RecordBatch, AthenaError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (index, column) in columns.iter().enumerate() {
        let text: ArrayRef = Arc::new(
            rows.iter()
                .map(|row| row.get(index).cloned().flatten())
                .collect::<StringArray>(),
        );
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let (data_type, array) = match cast_with_options(&text, &arrow_type(column), &strict) {
            Ok(typed) => (typed.data_type().clone(), typed),
            Err(e) => {
                tracing::debug!(column = column.name(), error = %e, "column kept as text");
                (DataType::Utf8, text)
            }
        };
        fields.push(Field::new(column.name(), data_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    Ok(if columns.is_empty() {
        RecordBatch::new_empty(schema)
    } else {
        RecordBatch::try_new(schema, arrays)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Date32Array, Decimal128Array, Int64Array};

    fn column(name: &str, kind: &str, precision: i32, scale: i32) -> ColumnInfo {
        ColumnInfo::builder()
            .name(name)
            .label(name)
            .r#type(kind)
            .precision(precision)
            .scale(scale)
            .build()
            .expect("name and type are set")
    }

    #[test]
    fn types_columns_by_athena_types() {
        let columns = [
            column("sale_date", "date", 0, 0),
            column("country", "varchar", 2147483647, 0),
            column("order_lines", "bigint", 19, 0),
            column("net_revenue", "decimal", 38, 3),
            column("seen", "array", 0, 0),
        ];
        let rows = vec![
            vec![
                Some("2010-12-01".to_owned()),
                Some("United Kingdom".into()),
                Some("42".into()),
                Some("-1234.560".into()),
                Some("[a, b]".into()),
            ],
            vec![Some("2010-12-02".into()), None, None, None, None],
        ];
        let batch = result_batch(&columns, &rows).expect("typed");
        assert_eq!(batch.num_rows(), 2);
        let dates = batch.column(0).as_any().downcast_ref::<Date32Array>();
        assert_eq!(dates.map(|d| d.value(0)), Some(14944));
        let lines = batch.column(2).as_any().downcast_ref::<Int64Array>();
        assert_eq!(lines.map(|l| (l.value(0), l.is_null(1))), Some((42, true)));
        let revenue = batch.column(3).as_any().downcast_ref::<Decimal128Array>();
        assert_eq!(revenue.map(|r| r.value(0)), Some(-1_234_560));
        assert_eq!(batch.column(3).data_type(), &DataType::Decimal128(38, 3));
        assert_eq!(batch.column(4).data_type(), &DataType::Utf8);
    }

    #[test]
    fn a_value_that_does_not_parse_keeps_its_column_as_text() {
        let columns = [column("n", "bigint", 19, 0)];
        let rows = vec![vec![Some("12".to_owned())], vec![Some("Infinity".into())]];
        let batch = result_batch(&columns, &rows).expect("kept as text");
        assert_eq!(batch.column(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn the_label_row_is_recognised_by_its_values() {
        let columns = [column("a", "bigint", 19, 0), column("b", "varchar", 1, 0)];
        assert!(is_label_row(
            &[Some("a".into()), Some("b".into())],
            &columns
        ));
        assert!(!is_label_row(
            &[Some("1".into()), Some("b".into())],
            &columns
        ));
        assert!(!is_label_row(&[Some("a".into())], &columns));
    }
}

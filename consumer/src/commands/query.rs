//! `consumer query` on a local lake: DataFusion over the Parquet files, with `sales_events`
//! and `daily_sales` registered as Hive-partitioned tables (`year`, `month`, `day` integers, as
//! Athena's partition projection declares them), so the SQL in `queries/` runs unchanged here
//! and on Athena.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

use crate::core::layout::{DAILY_SALES, SALES_EVENTS};
use crate::core::writer::{daily_sales_schema, sales_events_schema};

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The lake directory does not exist.
    #[error("no lake at {0}")]
    NoLake(String),
    /// DataFusion refused or failed the query (the message says where in the SQL).
    #[error("{0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Formatting the results failed.
    #[error("formatting results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    /// The query has more `?` placeholders than `--param` values, or fewer.
    #[error("the query has {placeholders} `?` parameters but {values} values were given")]
    Parameters { placeholders: usize, values: usize },
}

const PARTITION_COLUMNS: [&str; 3] = ["year", "month", "day"];

/// Copies `sql`, handing each `?` outside string literals and comments to `placeholder` (with
/// its index) to write in its place; returns the text and the number of placeholders.
fn substitute_placeholders(
    sql: &str,
    mut placeholder: impl FnMut(usize, &mut String),
) -> (String, usize) {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut placeholders = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\'' {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                placeholder(placeholders, &mut out);
                placeholders += 1;
            }
            _ => out.push(c),
        }
    }
    (out, placeholders)
}

/// `value` as an SQL string literal: quoted, with quotes doubled.
fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn check_parameter_count(placeholders: usize, values: &[String]) -> Result<(), QueryError> {
    if placeholders != values.len() {
        return Err(QueryError::Parameters {
            placeholders,
            values: values.len(),
        });
    }
    Ok(())
}

/// Replaces each `?` outside string literals and comments with the next value as an SQL string
/// literal, for the local engine.
pub fn bind_parameters(sql: &str, values: &[String]) -> Result<String, QueryError> {
    let (bound, placeholders) = substitute_placeholders(sql, |index, out| {
        if let Some(value) = values.get(index) {
            out.push_str(&string_literal(value));
        }
    });
    check_parameter_count(placeholders, values)?;
    Ok(bound)
}

/// The values for the `?` in `sql` as Athena's `ExecutionParameters` take them: SQL literals, so
/// strings in quotes (Athena pastes each value in as written). The SQL itself is sent unchanged.
pub fn execution_parameters(sql: &str, values: &[String]) -> Result<Vec<String>, QueryError> {
    let (_, placeholders) = substitute_placeholders(sql, |_, _| {});
    check_parameter_count(placeholders, values)?;
    Ok(values.iter().map(|value| string_literal(value)).collect())
}

fn with_partition_columns(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(PARTITION_COLUMNS.map(|name| Field::new(name, DataType::Int32, false)));
    Arc::new(Schema::new(fields))
}

async fn register(
    ctx: &SessionContext,
    lake: &Path,
    table: &str,
    schema: SchemaRef,
) -> Result<(), QueryError> {
    let dir = lake.join(table);
    if !dir.is_dir() {
        // No data yet: an empty table with the same columns, so queries still plan.
        let empty = MemTable::try_new(with_partition_columns(&schema), vec![vec![]])?;
        ctx.register_table(table, Arc::new(empty))?;
        return Ok(());
    }
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            PARTITION_COLUMNS
                .iter()
                .map(|name| (name.to_string(), DataType::Int32))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Runs `sql` over the lake in `lake` and returns the result batches.
pub async fn run_query(lake: &Path, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    if !lake.is_dir() {
        return Err(QueryError::NoLake(lake.display().to_string()));
    }
    let ctx = SessionContext::new();
    register(&ctx, lake, SALES_EVENTS, sales_events_schema()).await?;
    register(&ctx, lake, DAILY_SALES, daily_sales_schema()).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Formats result batches for printing.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    Ok(match format {
        OutputFormat::Table => arrow::util::pretty::pretty_format_batches(batches)?.to_string(),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            String::from_utf8_lossy(&writer.into_inner()).into_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parameters_as_quoted_literals() {
        let sql = "SELECT '?' AS q -- what?\nFROM t WHERE country = ? AND d BETWEEN ? AND ?";
        let values = [
            "O'Brien Land".to_owned(),
            "2011-01-01".into(),
            "2011-01-31".into(),
        ];
        assert_eq!(
            bind_parameters(sql, &values).expect("binds"),
            "SELECT '?' AS q -- what?\nFROM t WHERE country = 'O''Brien Land' AND d BETWEEN '2011-01-01' AND '2011-01-31'"
        );
        assert!(matches!(
            bind_parameters(sql, &values[..1]),
            Err(QueryError::Parameters {
                placeholders: 3,
                values: 1
            })
        ));
    }

    #[test]
    fn execution_parameters_are_quoted_literals_and_counted() {
        let sql = "SELECT * FROM t WHERE country = ? AND note <> '?' AND d < ? -- ?";
        let values = ["O'Brien Land".to_owned(), "2011-01-31".into()];
        assert_eq!(
            execution_parameters(sql, &values).expect("two placeholders"),
            ["'O''Brien Land'", "'2011-01-31'"]
        );
        assert!(matches!(
            execution_parameters(sql, &[]),
            Err(QueryError::Parameters {
                placeholders: 2,
                values: 0
            })
        ));
    }
}

//! `consumer query` on a local lake: DataFusion over the Parquet files, with `sales_events`,
//! `daily_sales` and `customer_sales` registered as Hive-partitioned tables (`year`, `month`,
//! `day` integers, as Athena's partition projection declares them) and `regions` as a CSV
//! table, so the SQL in `queries/` runs unchanged here and on Athena.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

use crate::commands::output::to_csv;
use crate::core::layout::{CUSTOMER_SALES, DAILY_SALES, REGIONS, SALES_EVENTS};
use crate::core::regions::{HEADER, Regions};
use crate::core::sql::ParameterError;
use crate::core::writer::{customer_sales_schema, daily_sales_schema, sales_events_schema};

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
    /// The query's `?` placeholders and the `--param` values do not pair up.
    #[error(transparent)]
    Parameters(#[from] ParameterError),
}

const PARTITION_COLUMNS: [&str; 3] = ["year", "month", "day"];

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

/// The `regions` table: the lake's CSV, or the shipped one for a lake that has none yet.
async fn register_regions(ctx: &SessionContext, lake: &Path) -> Result<(), QueryError> {
    let schema = Arc::new(Schema::new(
        HEADER
            .map(|name| Field::new(name, DataType::Utf8, false))
            .to_vec(),
    ));
    let dir = lake.join(REGIONS);
    if !dir.is_dir() {
        let table = Regions::default_table();
        let csv = table.to_csv();
        let batches = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .build(csv.as_slice())?
            .collect::<Result<Vec<_>, _>>()?;
        ctx.register_table(REGIONS, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
        return Ok(());
    }
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options = ListingOptions::new(Arc::new(CsvFormat::default().with_has_header(true)))
        .with_file_extension(".csv");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(REGIONS, Arc::new(ListingTable::try_new(config)?))?;
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
    register(&ctx, lake, CUSTOMER_SALES, customer_sales_schema()).await?;
    register_regions(&ctx, lake).await?;
    let frame = ctx.sql(sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    // No rows still has columns: a CSV of no rows is its header.
    if batches.is_empty() {
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}

/// Formats result batches for printing.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    Ok(match format {
        OutputFormat::Table => arrow::util::pretty::pretty_format_batches(batches)?.to_string(),
        OutputFormat::Csv => String::from_utf8_lossy(&to_csv(batches)?).into_owned(),
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

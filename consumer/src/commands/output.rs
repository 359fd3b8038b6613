//! Query answers as text the commands write: CSV for `consumer report`, the function's reports
//! and `consumer query --format csv`.

use arrow::array::RecordBatch;

/// Rows as CSV: a header row, then one line per row (dates as YYYY-MM-DD, money with its three
/// decimals). Reports and `consumer query --format csv` both write it.
pub fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        for batch in batches {
            writer.write(batch)?;
        }
    }
    Ok(out)
}

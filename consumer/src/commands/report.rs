//! `consumer report` and the function's `report` action: one country's daily sales over a range
//! of days, as a CSV with a header row. The answer is `queries/daily_sales_by_country.sql`'s,
//! run by the local engine on a local lake and by Athena on an S3 lake.

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};

use crate::aws::athena::{Athena, AthenaError};
use crate::core::sql::{ParameterError, execution_parameters};

/// The SQL of every report: the query file analysts run, compiled in.
pub const REPORT_SQL: &str = include_str!("../../../queries/daily_sales_by_country.sql");

/// Where the function writes reports, under the lake.
pub const REPORTS: &str = "reports";

/// The longest country name a report takes, in characters: the name goes into the report's key
/// (S3 keys are at most 1,024 bytes) and its notice's subject.
pub const MAX_COUNTRY_CHARS: usize = 100;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request names no country, or a range that ends before it starts.
    #[error("{0}")]
    BadRequest(String),
    /// The query's parameters do not fit the query file (it was edited).
    #[error(transparent)]
    Parameters(#[from] ParameterError),
    /// Athena did not answer the query.
    #[error(transparent)]
    Athena(#[from] AthenaError),
    /// The local engine failed.
    #[cfg(feature = "query")]
    #[error(transparent)]
    Query(#[from] crate::commands::query::QueryError),
    /// The answer could not be written as CSV.
    #[error("writing the CSV: {0}")]
    Csv(#[from] arrow::error::ArrowError),
}

/// One country's days `from` to `to`, both included.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ReportRequest {
    pub country: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl ReportRequest {
    /// A checked request: a country, and a range that does not end before it starts.
    pub fn new(country: &str, from: NaiveDate, to: NaiveDate) -> Result<Self, ReportError> {
        let country = country.trim();
        if country.is_empty() {
            return Err(ReportError::BadRequest(
                "the report needs a country (as the sales name it: United Kingdom, EIRE, ...)"
                    .into(),
            ));
        }
        if country.chars().count() > MAX_COUNTRY_CHARS || country.chars().any(char::is_control) {
            return Err(ReportError::BadRequest(format!(
                "{country:?} is not a country name: at most {MAX_COUNTRY_CHARS} characters, no \
                 line breaks or control characters"
            )));
        }
        if to < from {
            return Err(ReportError::BadRequest(format!(
                "the range ends ({to}) before it starts ({from})"
            )));
        }
        Ok(Self {
            country: country.to_owned(),
            from,
            to,
        })
    }

    /// The values of the query's three `?`: country, first day, last day.
    pub fn parameters(&self) -> Vec<String> {
        vec![
            self.country.clone(),
            self.from.to_string(),
            self.to.to_string(),
        ]
    }

    /// The report's key under the lake: `reports/<country>/<from>_<to>-<made at>.csv`, the
    /// country with every character but letters and digits as `-`.
    pub fn key(&self, made_at: DateTime<Utc>) -> String {
        let country: String = self
            .country
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { '-' })
            .collect();
        format!(
            "{REPORTS}/{country}/{}_{}-{}.csv",
            self.from,
            self.to,
            made_at.format("%Y%m%dT%H%M%SZ")
        )
    }
}

/// The answer on Athena (an S3 lake).
pub async fn run_on_athena(
    athena: &Athena,
    request: &ReportRequest,
) -> Result<Vec<RecordBatch>, ReportError> {
    let parameters = execution_parameters(REPORT_SQL, &request.parameters())?;
    Ok(athena.run(REPORT_SQL, parameters).await?.0)
}

/// The answer of the local engine (a local lake).
#[cfg(feature = "query")]
pub async fn run_locally(
    lake: &std::path::Path,
    request: &ReportRequest,
) -> Result<Vec<RecordBatch>, ReportError> {
    let sql = crate::core::sql::bind_parameters(REPORT_SQL, &request.parameters())?;
    Ok(crate::commands::query::run_query(lake, &sql).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    #[test]
    fn a_request_is_checked_and_names_its_report() {
        let request = ReportRequest::new(" United Kingdom ", day("2011-12-01"), day("2011-12-09"))
            .expect("valid");
        assert_eq!(
            request.parameters(),
            ["United Kingdom", "2011-12-01", "2011-12-09"]
        );
        let made_at = "2026-11-30T10:00:00Z".parse().expect("time");
        assert_eq!(
            request.key(made_at),
            "reports/United-Kingdom/2011-12-01_2011-12-09-20261130T100000Z.csv"
        );
        assert_eq!(
            execution_parameters(REPORT_SQL, &request.parameters()).map(|p| p.len()),
            Ok(3),
            "the query file takes country, from and to"
        );
        let error = ReportRequest::new("France", day("2011-12-09"), day("2011-12-01"));
        assert!(
            error
                .expect_err("backwards")
                .to_string()
                .contains("before it starts")
        );
        for bad in [" ", "France\nBcc: x", &"X".repeat(MAX_COUNTRY_CHARS + 1)] {
            assert!(ReportRequest::new(bad, day("2011-12-01"), day("2011-12-01")).is_err());
        }
    }
}

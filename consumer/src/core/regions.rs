//! The `regions` reference table: which UN M49 region and sub-region each country of the sales
//! is in. The lake holds it as one CSV object (`regions/regions.csv`) that Athena and the local
//! engine read as a table; users replace it with their own (`consumer regions --file`).

use std::collections::BTreeMap;

/// The table the repository ships (`reference/regions.csv`): every country name of the Online
/// Retail data sets.
pub const DEFAULT_REGIONS: &str = include_str!("../../../reference/regions.csv");

/// The header a regions file must start with.
pub const HEADER: [&str; 3] = ["country", "region", "sub_region"];

/// Why a regions file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegionsError {
    /// The file is not readable CSV.
    #[error("line {line}: {reason}")]
    Csv { line: u64, reason: String },
    /// The first line is not `country,region,sub_region`.
    #[error("the header is {found:?}: write country,region,sub_region")]
    Header { found: String },
    /// A row lacks a field or has an empty one.
    #[error("line {line}: a row is country,region,sub_region, none of them empty")]
    Row { line: u64 },
    /// A country is listed twice (a join would double its sales).
    #[error("line {line}: {country} is listed twice")]
    Duplicate { line: u64, country: String },
    /// No rows at all.
    #[error("no countries")]
    Empty,
}

/// Region and sub-region by country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    by_country: BTreeMap<String, (String, String)>,
}

impl Regions {
    /// Reads and checks a regions CSV (fields are trimmed).
    pub fn parse(text: &str) -> Result<Self, RegionsError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        let csv_error = |e: csv::Error| RegionsError::Csv {
            line: e.position().map_or(0, csv::Position::line),
            reason: e.to_string(),
        };
        let header = reader.headers().map_err(csv_error)?.clone();
        if header.iter().map(str::to_ascii_lowercase).ne(HEADER) {
            return Err(RegionsError::Header {
                found: header.iter().collect::<Vec<_>>().join(","),
            });
        }
        let mut by_country = BTreeMap::new();
        for record in reader.records() {
            let record = record.map_err(csv_error)?;
            let line = record.position().map_or(0, csv::Position::line);
            let fields: Vec<&str> = record.iter().collect();
            let [country, region, sub_region] = fields[..] else {
                return Err(RegionsError::Row { line });
            };
            if [country, region, sub_region].iter().any(|f| f.is_empty()) {
                return Err(RegionsError::Row { line });
            }
            let place = (region.to_owned(), sub_region.to_owned());
            if by_country.insert(country.to_owned(), place).is_some() {
                return Err(RegionsError::Duplicate {
                    line,
                    country: country.to_owned(),
                });
            }
        }
        if by_country.is_empty() {
            return Err(RegionsError::Empty);
        }
        Ok(Self { by_country })
    }

    /// The table the repository ships.
    pub fn default_table() -> Self {
        Self::parse(DEFAULT_REGIONS).unwrap_or_else(|_| Self {
            by_country: BTreeMap::new(),
        })
    }

    /// `(region, sub_region)` of `country`.
    pub fn of(&self, country: &str) -> Option<(&str, &str)> {
        self.by_country
            .get(country)
            .map(|(region, sub)| (region.as_str(), sub.as_str()))
    }

    pub fn len(&self) -> usize {
        self.by_country.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_country.is_empty()
    }

    /// The table as the lake stores it: the header, then one row per country in name order,
    /// quoted where CSV needs it.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let rows = std::iter::once(HEADER.map(str::to_owned)).chain(
            self.by_country
                .iter()
                .map(|(c, (r, s))| [c.clone(), r.clone(), s.clone()]),
        );
        for row in rows {
            // Writing to memory cannot fail.
            let _ = writer.write_record(&row);
        }
        writer.into_inner().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_reads_and_names_m49_regions() {
        let regions = Regions::parse(DEFAULT_REGIONS).expect("the shipped table is valid");
        assert_eq!(
            regions.of("United Kingdom"),
            Some(("Europe", "Northern Europe"))
        );
        assert_eq!(
            regions.of("Australia"),
            Some(("Oceania", "Australia and New Zealand"))
        );
        for name in [
            "EIRE",
            "RSA",
            "Channel Islands",
            "European Community",
            "Unspecified",
        ] {
            assert!(regions.of(name).is_some(), "{name}");
        }
        assert_eq!(
            Regions::parse(std::str::from_utf8(&regions.to_csv()).expect("utf-8"))
                .expect("round trip"),
            regions
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let error = |text| Regions::parse(text).expect_err("refused").to_string();
        assert!(error("name,region\nX,Y\n").contains("write country,region,sub_region"));
        assert!(error("country,region,sub_region\nX,Y\n").starts_with("line 2"));
        assert!(error("country,region,sub_region\nX,Y,Z\nX,Y,W\n").contains("X is listed twice"));
        assert!(error("country,region,sub_region\nX,,Z\n").starts_with("line 2"));
        assert_eq!(error("country,region,sub_region\n"), "no countries");
    }
}

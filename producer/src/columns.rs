//! Which CSV column holds which field: recognised from the Online Retail headers, or named by
//! the user for other layouts.

use std::fmt;
use std::str::FromStr;

use crate::reader::Fields;

/// A field of a sales line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    InvoiceNo,
    StockCode,
    Description,
    Quantity,
    InvoiceDate,
    UnitPrice,
    CustomerId,
    Country,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::InvoiceNo,
        Field::StockCode,
        Field::Description,
        Field::Quantity,
        Field::InvoiceDate,
        Field::UnitPrice,
        Field::CustomerId,
        Field::Country,
    ];

    /// The field's name in `--columns` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::InvoiceNo => "invoice_no",
            Field::StockCode => "stock_code",
            Field::Description => "description",
            Field::Quantity => "quantity",
            Field::InvoiceDate => "invoice_date",
            Field::UnitPrice => "unit_price",
            Field::CustomerId => "customer_id",
            Field::Country => "country",
        }
    }

    /// Header names that mean this field, normalised (see [`normalise`]): Online Retail
    /// (`InvoiceNo`, `UnitPrice`, `CustomerID`) and Online Retail II (`Invoice`, `Price`,
    /// `Customer ID`).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::InvoiceNo => &["invoiceno", "invoice", "invoicenumber"],
            Field::StockCode => &["stockcode"],
            Field::Description => &["description"],
            Field::Quantity => &["quantity"],
            Field::InvoiceDate => &["invoicedate"],
            Field::UnitPrice => &["unitprice", "price"],
            Field::CustomerId => &["customerid"],
            Field::Country => &["country"],
        }
    }

    /// A line without this column is still a sales line.
    fn optional(self) -> bool {
        matches!(self, Field::Description | Field::CustomerId)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Field {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Field::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Field::ALL.iter().map(|f| f.name()).collect();
                format!("unknown field {name:?}; fields are {}", names.join(", "))
            })
    }
}

/// `FIELD=HEADER`, as given to `--columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnOverride {
    pub field: Field,
    pub header: String,
}

impl FromStr for ColumnOverride {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (field, header) = text
            .split_once('=')
            .ok_or_else(|| format!("expected FIELD=HEADER, got {text:?}"))?;
        Ok(Self {
            field: field.trim().parse()?,
            header: header.trim().to_owned(),
        })
    }
}

/// Why the header does not describe sales lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Required fields have no column.
    #[error(
        "the header {header:?} has no column for {missing}; name it with --columns FIELD=HEADER"
    )]
    Missing {
        header: Vec<String>,
        missing: String,
    },
    /// A `--columns` override names a header that is not there.
    #[error("--columns {field}={name}: the header has no column {name:?}")]
    UnknownColumn { field: Field, name: String },
}

/// Lower-case letters and digits only: `Customer ID`, `CustomerID` and `customer_id` agree.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The column index of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    indices: [Option<usize>; 8],
    width: usize,
}

impl ColumnMap {
    pub fn from_header(
        header: &[String],
        overrides: &[ColumnOverride],
    ) -> Result<Self, HeaderError> {
        let normalised: Vec<String> = header.iter().map(|h| normalise(h)).collect();
        let mut indices = [None; 8];
        for (slot, field) in indices.iter_mut().zip(Field::ALL) {
            *slot = match overrides.iter().rev().find(|o| o.field == field) {
                Some(o) => Some(header.iter().position(|h| *h == o.header).ok_or_else(|| {
                    HeaderError::UnknownColumn {
                        field,
                        name: o.header.clone(),
                    }
                })?),
                None => field
                    .aliases()
                    .iter()
                    .find_map(|alias| normalised.iter().position(|n| n == alias)),
            };
        }
        let missing: Vec<_> = Field::ALL
            .into_iter()
            .zip(indices)
            .filter(|(field, index)| index.is_none() && !field.optional())
            .map(|(field, _)| field.name())
            .collect();
        if !missing.is_empty() {
            return Err(HeaderError::Missing {
                header: header.to_vec(),
                missing: missing.join(", "),
            });
        }
        Ok(Self {
            indices,
            width: header.len(),
        })
    }

    /// The number of columns every row must have.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The position of `field`'s column, if the layout has it.
    pub fn index(&self, field: Field) -> Option<usize> {
        let position = Field::ALL.iter().position(|f| *f == field)?;
        self.indices[position]
    }

    /// The field's text in a row of the right width (empty when the layout lacks the column).
    pub fn get<'a>(&self, fields: &'a Fields, field: Field) -> &'a str {
        self.index(field)
            .and_then(|index| fields.get(index))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Vec<String> {
        text.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn recognises_both_online_retail_headers() {
        let one = header(
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
        );
        let two =
            header("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country");
        for h in [one, two] {
            let map = ColumnMap::from_header(&h, &[]).expect("recognised");
            let row: Fields = "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom"
                .split(',')
                .collect();
            assert_eq!(map.get(&row, Field::InvoiceNo), "536365");
            assert_eq!(map.get(&row, Field::UnitPrice), "2.55");
            assert_eq!(map.get(&row, Field::CustomerId), "17850");
            assert_eq!(map.get(&row, Field::Country), "United Kingdom");
            assert_eq!(map.width(), 8);
        }
    }

    #[test]
    fn other_layouts_are_mapped_by_name() {
        let h = header("Country,Sku,Qty,When,Amount,Order");
        let err = ColumnMap::from_header(&h, &[]).expect_err("not recognised");
        assert!(
            err.to_string()
                .contains("invoice_no, stock_code, quantity, invoice_date, unit_price"),
            "{err}"
        );
        let overrides: Vec<ColumnOverride> = [
            "stock_code=Sku",
            "quantity=Qty",
            "invoice_date=When",
            "unit_price=Amount",
            "invoice_no=Order",
        ]
        .iter()
        .map(|s| s.parse().expect("override"))
        .collect();
        let map = ColumnMap::from_header(&h, &overrides).expect("mapped");
        let row: Fields = "France,22633,3,2011-01-02 10:00:00,1.25,A1"
            .split(',')
            .collect();
        assert_eq!(map.get(&row, Field::StockCode), "22633");
        assert_eq!(
            map.get(&row, Field::Description),
            "",
            "an absent optional column is empty"
        );
        assert!(matches!(
            ColumnMap::from_header(&h, &["country=Land".parse().expect("override")]),
            Err(HeaderError::UnknownColumn { .. })
        ));
        assert!("nope=X".parse::<ColumnOverride>().is_err());
        assert!("country".parse::<ColumnOverride>().is_err());
    }
}

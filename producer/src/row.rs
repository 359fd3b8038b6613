//! Turns one raw CSV record into a sales event, or says why it cannot be one.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use sales_stream::{EventError, EventIds, Origin, SalesEventRef, event_source};

use crate::columns::{ColumnMap, Field};
use crate::dates::DateParser;
use crate::reader::RawRecord;
use crate::source::Source;

/// Why a row was rejected. The text is what the rejects file says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The row has more or fewer fields than the header.
    #[error("expected {expected} fields, found {found}")]
    ColumnCount { expected: usize, found: usize },
    /// A required field is empty.
    #[error("empty {0}")]
    EmptyField(Field),
    /// The quantity is not a whole number.
    #[error("unparseable quantity {0:?}")]
    BadQuantity(String),
    /// The unit price is not a decimal number.
    #[error("unparseable unit price {0:?}")]
    BadPrice(String),
    /// The invoice date is in no known form (or not the one given with `--date-format`).
    #[error("unparseable invoice date {0:?}")]
    BadDate(String),
    /// The values parse but break an event rule (negative or too precise price, overflow).
    #[error("{0}")]
    Invalid(#[from] EventError),
}

/// Turns records of one source into events.
#[derive(Debug, Clone)]
pub struct RowParser {
    columns: ColumnMap,
    dates: DateParser,
    /// The input: its identity names the event ids (the same file, the same ids: re-streaming is
    /// harmless), its name the events' `source`.
    source: Source,
    /// The ids of the source's lines.
    ids: EventIds,
}

/// `NA`, `nan` and the like stand for a missing customer in real exports.
fn missing_marker(text: &str) -> bool {
    ["na", "n/a", "nan", "null", "none"]
        .iter()
        .any(|m| text.eq_ignore_ascii_case(m))
}

/// `17850.0` (a customer id that went through a spreadsheet as a number) is `17850`.
fn customer_id(text: &str) -> Option<&str> {
    let text = text.trim();
    if text.is_empty() || missing_marker(text) {
        return None;
    }
    let id = match text.split_once('.') {
        Some((whole, fraction))
            if !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b == b'0') =>
        {
            whole
        }
        _ => text,
    };
    Some(id)
}

fn quantity(text: &str) -> Result<i64, RejectReason> {
    let bad = || RejectReason::BadQuantity(text.to_owned());
    let trimmed = text.trim();
    if let Ok(value) = trimmed.parse::<i64>() {
        return Ok(value);
    }
    // `6.0` is a whole number written by a spreadsheet; `6.5` is not a quantity.
    let decimal = Decimal::from_str(trimmed).map_err(|_| bad())?;
    if !decimal.fract().is_zero() {
        return Err(bad());
    }
    i64::try_from(decimal).map_err(|_| bad())
}

fn non_empty(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

impl RowParser {
    pub fn new(columns: ColumnMap, dates: DateParser, source: impl Into<Source>) -> Self {
        let source = source.into();
        Self {
            columns,
            dates,
            ids: EventIds::new(&source.id),
            source,
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// What the id and `source` of the event at `line` derive from.
    pub fn origin(&self, line: u64) -> Origin<'_> {
        Origin {
            name: &self.source.name,
            id: &self.source.id,
            line,
        }
    }

    /// The ids of the source's lines.
    pub fn ids(&self) -> &EventIds {
        &self.ids
    }

    /// The event of `record`, its text borrowed from the record's.
    pub fn parse<'r>(&self, record: &'r RawRecord) -> Result<SalesEventRef<'r>, RejectReason> {
        self.parse_as(record, self.ids.id(record.line))
    }

    /// [`Self::parse`] with the id of the record's line derived ahead (it must be
    /// `self.ids().id(record.line)`).
    pub fn parse_as<'r>(
        &self,
        record: &'r RawRecord,
        event_id: uuid::Uuid,
    ) -> Result<SalesEventRef<'r>, RejectReason> {
        let fields = record.fields();
        if fields.len() != self.columns.width() {
            return Err(RejectReason::ColumnCount {
                expected: self.columns.width(),
                found: fields.len(),
            });
        }
        let get = |field| self.columns.get(fields, field);
        let required = |field| non_empty(get(field)).ok_or(RejectReason::EmptyField(field));
        let invoice_no = required(Field::InvoiceNo)?;
        let stock_code = required(Field::StockCode)?;
        let country = required(Field::Country)?;
        let quantity = quantity(get(Field::Quantity))?;
        let price_text = get(Field::UnitPrice).trim();
        let unit_price =
            Decimal::from_str(price_text).map_err(|_| RejectReason::BadPrice(price_text.into()))?;
        let date_text = get(Field::InvoiceDate);
        let event_time = self
            .dates
            .parse(date_text)
            .ok_or_else(|| RejectReason::BadDate(date_text.trim().to_owned()))?;
        let event = SalesEventRef {
            event_id,
            event_time,
            invoice_no: Cow::Borrowed(invoice_no),
            stock_code: Cow::Borrowed(stock_code),
            description: non_empty(get(Field::Description)).map(Cow::Borrowed),
            quantity,
            unit_price,
            customer_id: customer_id(get(Field::CustomerId)).map(Cow::Borrowed),
            country: Cow::Borrowed(country),
            source: Cow::Owned(event_source(&self.source.name, record.line)),
        };
        event.validate()?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sales_stream::EventError;
    use sales_stream::SalesEvent;

    const HEADER: &str =
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";

    fn parser() -> RowParser {
        let header: Vec<String> = HEADER.split(',').map(str::to_owned).collect();
        RowParser::new(
            ColumnMap::from_header(&header, &[]).expect("header"),
            DateParser::default(),
            "sales.csv",
        )
    }

    fn record(line: u64, text: &str) -> RawRecord {
        RawRecord::new(line, text.to_owned(), text.split(',').collect())
    }

    fn parse(text: &str) -> Result<SalesEvent, RejectReason> {
        parser()
            .parse(&record(7, text))
            .map(SalesEventRef::into_owned)
    }

    #[test]
    fn a_plain_sale() {
        let event =
            parse("536365,85123A,WHITE HANGING HEART ,6,12/1/2010 8:26,2.55,17850,United Kingdom")
                .expect("valid");
        assert_eq!(event.event_id, sales_stream::event_id("sales.csv", 7));
        assert_eq!(event.source, "sales.csv:7");
        assert_eq!(event.stock_code, "85123A");
        assert_eq!(event.description.as_deref(), Some("WHITE HANGING HEART"));
        assert_eq!(event.quantity, 6);
        assert_eq!(event.unit_price.to_string(), "2.55");
        assert_eq!(event.event_time.to_string(), "2010-12-01 08:26:00");
    }

    #[test]
    fn real_quirks_are_sales_not_errors() {
        let cancellation = parse("C536379,D,Discount,-1,12/1/2010 9:41,27.50,14527,United Kingdom")
            .expect("valid");
        assert_eq!(
            (cancellation.invoice_no.as_str(), cancellation.quantity),
            ("C536379", -1)
        );
        let write_off =
            parse("536414,22139,,-56,12/1/2010 11:52,0,,United Kingdom").expect("valid");
        assert_eq!(write_off.description, None);
        assert_eq!(write_off.customer_id, None);
        assert!(write_off.unit_price.is_zero());
        for (text, expected) in [
            ("NA", None),
            ("17850.0", Some("17850")),
            (" 12583 ", Some("12583")),
        ] {
            let row = format!("536370,POST,POSTAGE,3,12/1/2010 8:45,18,{text},France");
            assert_eq!(
                parse(&row).expect("valid").customer_id.as_deref(),
                expected,
                "{text}"
            );
        }
        for code in ["M", "BANK CHARGES", "POST", "00123"] {
            let row = format!("536370,{code},X,1,12/1/2010 8:45,1,12583,France");
            assert_eq!(
                parse(&row).expect("valid").stock_code,
                code,
                "codes stay strings"
            );
        }
        assert_eq!(
            parse("1,A,B,6.0,12/1/2010 8:45,1,2,France")
                .expect("valid")
                .quantity,
            6
        );
        let three_places = parse("1,A,B,6,12/1/2010 8:45,0.125,2,France").expect("valid");
        assert_eq!(three_places.unit_price.to_string(), "0.125");
    }

    #[test]
    fn each_reject_reason() {
        assert_eq!(
            parse("1,A,B,6,12/1/2010 8:45,1,2"),
            Err(RejectReason::ColumnCount {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            parse(" ,A,B,6,12/1/2010 8:45,1,2,France"),
            Err(RejectReason::EmptyField(Field::InvoiceNo))
        );
        assert_eq!(
            parse("1,,B,6,12/1/2010 8:45,1,2,France"),
            Err(RejectReason::EmptyField(Field::StockCode))
        );
        assert_eq!(
            parse("1,A,B,6,12/1/2010 8:45,1,2,"),
            Err(RejectReason::EmptyField(Field::Country))
        );
        assert_eq!(
            parse("1,A,B,six,12/1/2010 8:45,1,2,France"),
            Err(RejectReason::BadQuantity("six".into()))
        );
        assert_eq!(
            parse("1,A,B,6.5,12/1/2010 8:45,1,2,France"),
            Err(RejectReason::BadQuantity("6.5".into()))
        );
        assert_eq!(
            parse("1,A,B,6,12/1/2010 8:45,£1,2,France"),
            Err(RejectReason::BadPrice("£1".into()))
        );
        assert_eq!(
            parse("1,A,B,6,someday,1,2,France"),
            Err(RejectReason::BadDate("someday".into()))
        );
        assert!(matches!(
            parse("A563186,B,Adjust bad debt,1,8/12/2011 14:51,-11062.06,,United Kingdom"),
            Err(RejectReason::Invalid(EventError::NegativePrice(_)))
        ));
        assert!(matches!(
            parse("1,A,B,6,12/1/2010 8:45,0.0001,2,France"),
            Err(RejectReason::Invalid(EventError::PriceTooPrecise(_)))
        ));
        let message = parse("1,A,B,6,12/1/2010 8:45,1.2345,2,France")
            .expect_err("rejected")
            .to_string();
        assert_eq!(message, "unit price 1.2345 has more than 3 decimal places");
    }
}

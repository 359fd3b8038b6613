//! Property tests: no input file makes the CSV reader or the row parser panic. Files come from
//! anywhere; each must end in events, rejected rows or one clear error.

use producer::{ColumnMap, CsvReader, DateParser, Line, RowParser};
use proptest::prelude::*;

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

fn read_everything(bytes: &[u8]) {
    let Ok(mut reader) = CsvReader::new(bytes, None) else {
        return;
    };
    let Ok(columns) = ColumnMap::from_header(reader.header(), &[]) else {
        return;
    };
    let parser = RowParser::new(columns, DateParser::default(), "fuzz.csv");
    while let Ok(Some(line)) = reader.next_line() {
        if let Line::Record(record) = line {
            let _ = parser.parse(&record);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4_096)) {
        read_everything(&bytes);
    }

    #[test]
    fn arbitrary_rows_under_a_real_header(body in proptest::collection::vec(any::<u8>(), 0..4_096)) {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        read_everything(&bytes);
    }

    #[test]
    fn rows_of_plausible_fields(
        rows in proptest::collection::vec(
            proptest::collection::vec(r#"[0-9A-Za-z .,;:/"£\-]{0,16}"#, 0..10), 0..40),
        delimiter in prop::sample::select(vec![",", ";"]),
    ) {
        let mut text = HEADER.replace(',', delimiter);
        for row in rows {
            text.push_str(&row.join(delimiter));
            text.push_str(if text.len() % 2 == 0 { "\n" } else { "\r\n" });
        }
        read_everything(text.as_bytes());
        // And as ISO-8859-1 bytes, where `£` is the single byte 0xA3.
        let latin1: Vec<u8> = text.chars().map(|c| if c == '£' { 0xA3 } else { c as u8 }).collect();
        read_everything(&latin1);
    }
}

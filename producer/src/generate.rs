//! `producer generate`: synthetic Online-Retail-like sales CSV at any size, with the quirks of
//! the real exports (cancellations, write-offs, missing customers, non-product codes, repeated
//! lines, a bad-debt adjustment with a negative price, all-empty rows), over many days and
//! countries. The same seed always gives the same file.

use std::io::{self, Write};

use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Data lines to write (repeated lines and all-empty rows included).
    pub rows: u64,
    pub seed: u64,
    /// The day of the first invoice.
    pub start: NaiveDate,
    /// Spread the rows evenly over this many days (a day of live traffic, or a backfill of a
    /// few weeks) instead of the real data's pace of about 900 lines a day.
    pub days: Option<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            rows: 100_000,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2010, 12, 1).unwrap_or_default(),
            days: None,
        }
    }
}

const HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// Countries and their weights, roughly as in the real data set (mostly the United Kingdom).
const COUNTRIES: [(&str, u32); 12] = [
    ("United Kingdom", 820),
    ("Germany", 40),
    ("France", 35),
    ("EIRE", 30),
    ("Spain", 12),
    ("Netherlands", 12),
    ("Belgium", 10),
    ("Switzerland", 9),
    ("Portugal", 8),
    ("Australia", 6),
    ("Norway", 6),
    ("Channel Islands", 4),
];

const ADJECTIVES: [&str; 12] = [
    "WHITE", "RED", "VINTAGE", "REGENCY", "PINK", "BLUE", "GREEN", "GLASS", "WOODEN", "JUMBO",
    "SMALL", "HANGING",
];
const NOUNS: [&str; 12] = [
    "HEART T-LIGHT HOLDER",
    "METAL LANTERN",
    "COAT HANGER",
    "HOT WATER BOTTLE",
    "TEACUP AND SAUCER",
    "LUNCH BAG",
    "ALARM CLOCK",
    "CAKE CASES",
    "NESTING BOXES",
    "PARTY BUNTING",
    "DOORMAT",
    "STORAGE JAR",
];
const PRICES: [&str; 16] = [
    "0.29", "0.39", "0.42", "0.55", "0.65", "0.85", "1.25", "1.65", "1.95", "2.10", "2.55", "2.95",
    "3.39", "4.95", "7.65", "12.75",
];
const QUANTITIES: [i64; 10] = [1, 2, 3, 4, 6, 8, 10, 12, 24, 48];

/// Codes that are charges rather than products, with their descriptions and prices.
const SERVICE_CODES: [(&str, &str, &str); 4] = [
    ("POST", "POSTAGE", "18.00"),
    ("M", "Manual", "0.85"),
    ("BANK CHARGES", "Bank Charges", "15.00"),
    ("DOT", "DOTCOM POSTAGE", "11.08"),
];

struct Product {
    code: String,
    description: String,
    price: &'static str,
}

struct Customer {
    id: u32,
    country: &'static str,
}

fn weighted<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (item, weight) in items {
        if pick < *weight {
            return item;
        }
        pick -= weight;
    }
    items[0].0
}

fn catalogue(rng: &mut ChaCha8Rng) -> Vec<Product> {
    (0..400)
        .map(|i| {
            let mut code = (20_000 + i * 157 % 70_000).to_string();
            if rng.random_bool(0.3) {
                code.push(char::from(b'A' + rng.random_range(0..8)));
            }
            let mut description = format!(
                "{} {}",
                ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                NOUNS[rng.random_range(0..NOUNS.len())]
            );
            if rng.random_bool(0.03) {
                // Some real descriptions carry commas, so the file needs quoting.
                description.push_str(", SET OF 3");
            }
            let price = if rng.random_bool(0.02) {
                "0.125"
            } else {
                PRICES[rng.random_range(0..PRICES.len())]
            };
            Product {
                code,
                description,
                price,
            }
        })
        .collect()
}

/// Seconds from opening (08:00) to closing (20:00).
const OPENING_SECONDS: u64 = 12 * 3600;

/// A CSV write error as the I/O error underneath, so that a closed pipe stays recognisable as
/// one (writing strings can fail in no other way).
fn write_error(error: csv::Error) -> io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// Writes the CSV and returns the number of data lines written.
pub fn generate(options: &GenerateOptions, output: impl Write) -> io::Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let products = catalogue(&mut rng);
    let customers: Vec<Customer> = (0..4_000)
        .map(|i| Customer {
            id: 12_346 + i,
            country: weighted(&mut rng, &COUNTRIES),
        })
        .collect();
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(output);
    out.write_record(HEADER).map_err(write_error)?;

    let mut time: NaiveDateTime = options.start.and_hms_opt(8, 0, 0).unwrap_or_default();
    let mut invoice = 536_365_u64;
    let mut written = 0_u64;
    let line = |fields: [&str; 8], out: &mut csv::Writer<_>, written: &mut u64| -> io::Result<()> {
        if *written < options.rows {
            out.write_record(fields).map_err(write_error)?;
            *written += 1;
        }
        Ok(())
    };
    let opening = options.start.and_hms_opt(8, 0, 0).unwrap_or_default();
    while written < options.rows {
        if let Some(days) = options.days.filter(|d| *d > 0) {
            // Row `written` of `rows` falls at the same fraction of the days' opening hours.
            let rows_per_day = options.rows.div_ceil(u64::from(days));
            let (day, row) = (written / rows_per_day, written % rows_per_day);
            let second = row * OPENING_SECONDS / rows_per_day;
            time = opening + Duration::days(day as i64) + Duration::seconds(second as i64);
        } else {
            time += Duration::minutes(rng.random_range(1..25));
            if time.hour() >= 20 {
                time = (time.date() + Duration::days(1))
                    .and_hms_opt(8, 0, 0)
                    .unwrap_or(time);
            }
        }
        let date = format!("{}", time.format("%-m/%-d/%Y %-H:%M"));
        let customer = &customers[rng.random_range(0..customers.len())];
        let customer_id = if rng.random_bool(0.2) {
            String::new()
        } else {
            customer.id.to_string()
        };
        let kind = rng.random_range(0..10_000);
        invoice += 1;
        if kind < 300 {
            // A cancellation: `C` invoice, negative quantities, sometimes a discount line.
            let number = format!("C{invoice}");
            for _ in 0..rng.random_range(1..4) {
                let (code, description, price) = if rng.random_bool(0.1) {
                    ("D".to_owned(), "Discount".to_owned(), "5.76")
                } else {
                    let p = &products[rng.random_range(0..products.len())];
                    (p.code.clone(), p.description.clone(), p.price)
                };
                let quantity = (-QUANTITIES[rng.random_range(0..QUANTITIES.len())]).to_string();
                line(
                    [
                        &number,
                        &code,
                        &description,
                        &quantity,
                        &date,
                        price,
                        &customer_id,
                        customer.country,
                    ],
                    &mut out,
                    &mut written,
                )?;
            }
        } else if kind < 450 {
            // A stock write-off: negative quantity, price 0, no customer, often no description.
            let p = &products[rng.random_range(0..products.len())];
            let description = if rng.random_bool(0.6) { "" } else { "damaged" };
            let quantity = (-rng.random_range(1..100)).to_string();
            line(
                [
                    &invoice.to_string(),
                    &p.code,
                    description,
                    &quantity,
                    &date,
                    "0",
                    "",
                    "United Kingdom",
                ],
                &mut out,
                &mut written,
            )?;
        } else if kind < 470 {
            // A bad-debt adjustment: a negative price, which the producer rejects.
            line(
                [
                    &format!("A{invoice}"),
                    "B",
                    "Adjust bad debt",
                    "1",
                    &date,
                    "-11062.06",
                    "",
                    "United Kingdom",
                ],
                &mut out,
                &mut written,
            )?;
        } else if kind < 480 {
            line(["", "", "", "", "", "", "", ""], &mut out, &mut written)?;
        } else {
            let number = invoice.to_string();
            for _ in 0..rng.random_range(1..30) {
                let (code, description, price) = if rng.random_bool(0.02) {
                    let (c, d, p) = SERVICE_CODES[rng.random_range(0..SERVICE_CODES.len())];
                    (c.to_owned(), d.to_owned(), p)
                } else {
                    let p = &products[rng.random_range(0..products.len())];
                    (
                        p.code.clone(),
                        p.description.clone(),
                        if rng.random_bool(0.005) { "0" } else { p.price },
                    )
                };
                let quantity = QUANTITIES[rng.random_range(0..QUANTITIES.len())].to_string();
                let fields = [
                    number.as_str(),
                    &code,
                    &description,
                    &quantity,
                    &date,
                    price,
                    &customer_id,
                    customer.country,
                ];
                line(fields, &mut out, &mut written)?;
                if rng.random_bool(0.007) {
                    // The same line twice: two sale lines, both kept.
                    line(fields, &mut out, &mut written)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rows: u64, seed: u64) -> String {
        let mut out = Vec::new();
        let options = GenerateOptions {
            rows,
            seed,
            ..Default::default()
        };
        assert_eq!(generate(&options, &mut out).expect("generates"), rows);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn same_seed_same_file_and_exact_row_count() {
        let a = text(2_000, 7);
        assert_eq!(a, text(2_000, 7));
        assert_ne!(a, text(2_000, 8));
        assert_eq!(a.lines().count(), 2_001);
        assert!(a.starts_with(
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\r\n"
        ));
    }

    #[test]
    fn carries_the_real_quirks() {
        let data = text(20_000, 1);
        let lines: Vec<&str> = data.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with('C') && l.contains(",-")),
            "cancellations"
        );
        assert!(
            lines.iter().any(|l| l.contains(",0,,United Kingdom")),
            "write-offs"
        );
        assert!(lines.iter().any(|l| l.contains(",POST,")), "service codes");
        assert!(
            lines.iter().any(|l| l.contains(",-11062.06,")),
            "a negative price to reject"
        );
        assert!(lines.contains(&",,,,,,,"), "all-empty rows");
        assert!(
            lines
                .windows(2)
                .any(|w| w[0] == w[1] && !w[0].starts_with(',')),
            "repeated lines"
        );
        let countries = COUNTRIES.iter().filter(|(c, _)| data.contains(c)).count();
        assert!(countries >= 8, "{countries} countries");
        assert!(days_of(&data).len() > 10, "{} days", days_of(&data).len());
    }

    fn days_of(data: &str) -> std::collections::BTreeSet<NaiveDate> {
        let mut reader = csv::Reader::from_reader(data.as_bytes());
        reader
            .records()
            .filter_map(|r| {
                let r = r.expect("csv");
                NaiveDateTime::parse_from_str(&r[4], "%m/%d/%Y %H:%M").ok()
            })
            .map(|t| t.date())
            .collect()
    }

    #[test]
    fn spreads_rows_over_the_days_asked_for() {
        for days in [1, 2, 40] {
            let mut out = Vec::new();
            let options = GenerateOptions {
                rows: 20_000,
                days: Some(days),
                ..Default::default()
            };
            generate(&options, &mut out).expect("generates");
            let seen = days_of(&String::from_utf8(out).expect("utf-8"));
            assert_eq!(seen.len(), days as usize, "{seen:?}");
            assert_eq!(seen.first(), Some(&options.start));
        }
    }
}

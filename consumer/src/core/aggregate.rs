//! The aggregated tables, in exact decimals: daily sales per (sale date, country, stock code),
//! and customer sales per (sale date, customer, country, invoice).
//!
//! Money is summed as integer thousandths (the unscaled value of the lake's `decimal(38,3)`), so
//! no sum is ever rounded: `quantity × unit_price` of a valid event is exact in thousandths, and
//! fits `decimal(18,3)`, so no realistic number of events can overflow a sum.
//!
//! Rows are grouped in hash maps looked up with borrowed keys ([`Line`]'s text points into the
//! decoded batch): a line whose group exists already costs no allocation. Rows come out in the
//! order of their first lines.
//!
//! A key's text is a type parameter: `String` (the default) where the rows outlive what they
//! sum (compaction and `verify` read events one at a time), `&str` where the events stay in
//! memory until the rows are written (the batch step), which then copies no text at all.

use std::hash::Hash;

use chrono::NaiveDate;
use hashbrown::{DefaultHashBuilder, Equivalent};
use indexmap::IndexMap;
use sales_stream::{SalesEvent, SalesEventRef};

/// What aggregation reads of one accepted sales line, borrowed from wherever it is stored.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub sale_date: NaiveDate,
    pub invoice_no: &'a str,
    pub stock_code: &'a str,
    pub description: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub country: &'a str,
    pub quantity: i64,
    /// `quantity × unit_price` in thousandths.
    pub amount: i128,
}

impl<'a> Line<'a> {
    /// The line of a valid event ([`SalesEvent::validate`]); `None` for one whose amount cannot
    /// be computed, which was refused before this point.
    pub fn of(event: &'a SalesEventRef<'_>) -> Option<Self> {
        Some(Self {
            sale_date: event.event_time.date(),
            invoice_no: &event.invoice_no,
            stock_code: &event.stock_code,
            description: event.description.as_deref(),
            customer_id: event.customer_id.as_deref(),
            country: &event.country,
            quantity: event.quantity,
            amount: event.amount_thousandths()?,
        })
    }
}

/// The grouping key of `daily_sales`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DailyKey<S = String> {
    pub sale_date: NaiveDate,
    pub country: S,
    pub stock_code: S,
}

/// A [`DailyKey`] borrowed from a line. Its fields hash as the key's do (a `String` hashes as
/// its `str`), so it finds the key's entry.
#[derive(Hash)]
struct DailyKeyRef<'a> {
    sale_date: NaiveDate,
    country: &'a str,
    stock_code: &'a str,
}

impl<S: AsRef<str>> Equivalent<DailyKey<S>> for DailyKeyRef<'_> {
    fn equivalent(&self, key: &DailyKey<S>) -> bool {
        self.sale_date == key.sale_date
            && self.country == key.country.as_ref()
            && self.stock_code == key.stock_code.as_ref()
    }
}

/// Sums of sales lines, in exact integers. Money fields are thousandths (`2.550` is `2550`).
///
/// Sums are `i128`: no number of valid events can overflow one, and the writer refuses a sum that
/// does not fit its column instead of wrapping it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub units_sold: i128,
    pub units_returned: i128,
    pub net_quantity: i128,
    pub gross_revenue: i128,
    pub refunds: i128,
    pub net_revenue: i128,
    pub order_lines: i64,
}

impl Totals {
    /// Adds one line: `quantity` units for `amount` (`quantity × unit_price` in thousandths).
    pub fn add(&mut self, quantity: i64, amount: i128) {
        let quantity = i128::from(quantity);
        if quantity > 0 {
            self.units_sold += quantity;
            self.gross_revenue += amount;
        } else if quantity < 0 {
            self.units_returned -= quantity;
            self.refunds -= amount;
        }
        self.net_quantity += quantity;
        self.net_revenue += amount;
        self.order_lines += 1;
    }

    /// Adds the sums of another set of lines (the same key in another file).
    pub fn merge(&mut self, other: &Totals) {
        self.units_sold += other.units_sold;
        self.units_returned += other.units_returned;
        self.net_quantity += other.net_quantity;
        self.gross_revenue += other.gross_revenue;
        self.refunds += other.refunds;
        self.net_revenue += other.net_revenue;
        self.order_lines += other.order_lines;
    }
}

/// One `daily_sales` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySales<S = String> {
    pub key: DailyKey<S>,
    /// The first non-empty description seen for the product that day.
    pub description: Option<S>,
    pub totals: Totals,
}

/// The grouping key of `customer_sales`: one invoice of one customer on one day.
///
/// The invoice is part of the key so that the number of orders stays exact however the lines of
/// one invoice are spread over shards, batches and files: `COUNT(DISTINCT invoice_no)` over any
/// set of rows counts each order once, where summing per-file order counts would count an
/// invoice split over two files twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerKey<S = String> {
    pub sale_date: NaiveDate,
    /// [`NO_CUSTOMER`] for lines without a customer id.
    pub customer_id: S,
    pub country: S,
    pub invoice_no: S,
}

/// A [`CustomerKey`] borrowed from a line (see [`DailyKeyRef`]).
#[derive(Hash)]
struct CustomerKeyRef<'a> {
    sale_date: NaiveDate,
    customer_id: &'a str,
    country: &'a str,
    invoice_no: &'a str,
}

impl<S: AsRef<str>> Equivalent<CustomerKey<S>> for CustomerKeyRef<'_> {
    fn equivalent(&self, key: &CustomerKey<S>) -> bool {
        self.sale_date == key.sale_date
            && self.customer_id == key.customer_id.as_ref()
            && self.country == key.country.as_ref()
            && self.invoice_no == key.invoice_no.as_ref()
    }
}

/// The `customer_id` of `customer_sales` rows whose lines name no customer (guest checkouts in
/// the Online Retail data): kept, and grouped together, rather than dropped.
pub const NO_CUSTOMER: &str = "";

/// One `customer_sales` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSales<S = String> {
    pub key: CustomerKey<S>,
    pub totals: Totals,
}

/// Rows by key in the order their first line came: the same lines make the same file whatever
/// the hasher's seed, and no sort is needed at the end (a file of a few thousand rows is one
/// page a column, so row order would prune nothing).
type Rows<K, V> = IndexMap<K, V, DefaultHashBuilder>;

/// `daily_sales` rows built up one line at a time.
#[derive(Debug)]
pub struct DailyAggregator<S = String> {
    rows: Rows<DailyKey<S>, (Option<S>, Totals)>,
}

impl<S> Default for DailyAggregator<S> {
    fn default() -> Self {
        Self {
            rows: Rows::default(),
        }
    }
}

impl<S: AsRef<str> + Hash + Eq> DailyAggregator<S> {
    pub fn add<'a>(&mut self, line: &Line<'a>)
    where
        S: From<&'a str>,
    {
        let key = DailyKeyRef {
            sale_date: line.sale_date,
            country: line.country,
            stock_code: line.stock_code,
        };
        // The key is copied only for a new row.
        let row = match self.rows.get_index_of(&key) {
            Some(row) => row,
            None => {
                let key = DailyKey {
                    sale_date: line.sale_date,
                    country: line.country.into(),
                    stock_code: line.stock_code.into(),
                };
                self.rows.insert_full(key, Default::default()).0
            }
        };
        let (description, totals) = &mut self.rows[row];
        if description.is_none() {
            *description = line.description.filter(|d| !d.is_empty()).map(S::from);
        }
        totals.add(line.quantity, line.amount);
    }

    /// One row per key, in the order of their first lines.
    pub fn finish(self) -> Vec<DailySales<S>> {
        self.rows
            .into_iter()
            .map(|(key, (description, totals))| DailySales {
                key,
                description,
                totals,
            })
            .collect()
    }
}

/// `customer_sales` rows built up one line at a time.
#[derive(Debug)]
pub struct CustomerAggregator<S = String> {
    rows: Rows<CustomerKey<S>, Totals>,
    /// The row of the last line: an invoice's lines come one after another.
    last: Option<usize>,
}

impl<S> Default for CustomerAggregator<S> {
    fn default() -> Self {
        Self {
            rows: Rows::default(),
            last: None,
        }
    }
}

impl<S: AsRef<str> + Hash + Eq> CustomerAggregator<S> {
    pub fn add<'a>(&mut self, line: &Line<'a>)
    where
        S: From<&'a str>,
    {
        let key = CustomerKeyRef {
            sale_date: line.sale_date,
            customer_id: line.customer_id.map_or(NO_CUSTOMER, str::trim),
            country: line.country,
            invoice_no: line.invoice_no,
        };
        let last = self.last.filter(|&row| {
            self.rows
                .get_index(row)
                .is_some_and(|(k, _)| key.equivalent(k))
        });
        let row = match last.or_else(|| self.rows.get_index_of(&key)) {
            Some(row) => row,
            None => {
                let key = CustomerKey {
                    sale_date: key.sale_date,
                    customer_id: key.customer_id.into(),
                    country: key.country.into(),
                    invoice_no: key.invoice_no.into(),
                };
                self.rows.insert_full(key, Totals::default()).0
            }
        };
        self.last = Some(row);
        self.rows[row].add(line.quantity, line.amount);
    }

    /// One row per key, in the order of their first lines.
    pub fn finish(self) -> Vec<CustomerSales<S>> {
        self.rows
            .into_iter()
            .map(|(key, totals)| CustomerSales { key, totals })
            .collect()
    }
}

/// Every table aggregated from accepted events (`daily_sales` and `customer_sales`), built up
/// together in one pass over the events.
#[derive(Debug)]
pub struct Aggregates<S = String> {
    daily: DailyAggregator<S>,
    customers: CustomerAggregator<S>,
}

impl<S> Default for Aggregates<S> {
    fn default() -> Self {
        Self {
            daily: DailyAggregator::default(),
            customers: CustomerAggregator::default(),
        }
    }
}

/// The rows of the aggregated tables, each in the order of their first lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateRows<S = String> {
    pub daily: Vec<DailySales<S>>,
    pub customers: Vec<CustomerSales<S>>,
}

impl<S: AsRef<str> + Hash + Eq> Aggregates<S> {
    pub fn add_line<'a>(&mut self, line: &Line<'a>)
    where
        S: From<&'a str>,
    {
        self.daily.add(line);
        self.customers.add(line);
    }

    pub fn finish(self) -> AggregateRows<S> {
        AggregateRows {
            daily: self.daily.finish(),
            customers: self.customers.finish(),
        }
    }
}

impl Aggregates {
    /// Adds a valid event ([`SalesEvent::validate`]), owned or a view.
    pub fn add<'e>(&mut self, event: impl Into<SalesEventRef<'e>>) {
        if let Some(line) = Line::of(&event.into()) {
            self.add_line(&line);
        }
    }
}

/// Aggregates events into the rows of every aggregated table.
pub fn aggregate<'a>(events: impl IntoIterator<Item = &'a SalesEvent>) -> AggregateRows {
    let mut aggregates = Aggregates::default();
    for event in events {
        aggregates.add(event);
    }
    aggregates.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn event(
        line: u64,
        time: &str,
        country: &str,
        code: &str,
        quantity: i64,
        price: &str,
    ) -> SalesEvent {
        SalesEvent {
            event_id: sales_stream::event_id("t.csv", line),
            event_time: NaiveDateTime::from_str(time).expect("time"),
            invoice_no: "1".into(),
            stock_code: code.into(),
            description: line.is_multiple_of(2).then(|| format!("D{line}")),
            quantity,
            unit_price: Decimal::from_str(price).expect("price"),
            customer_id: None,
            country: country.into(),
            source: format!("t.csv:{line}"),
        }
    }

    #[test]
    fn sums_sales_returns_and_revenue_exactly() {
        let events = [
            event(1, "2010-12-01T08:26:00", "France", "A", 6, "2.55"),
            event(2, "2010-12-01T17:00:00", "France", "A", 3, "0.125"),
            event(3, "2010-12-01T18:00:00", "France", "A", -2, "2.55"),
            event(4, "2010-12-01T19:00:00", "France", "A", -56, "0"),
            event(5, "2010-12-02T08:00:00", "France", "A", 1, "0.1"),
            event(7, "2010-12-01T08:00:00", "Spain", "A", 1, "0.2"), // odd lines have no description
        ];
        let rows = aggregate(&events).daily;
        assert_eq!(rows.len(), 3);
        let france = &rows[0];
        assert_eq!(france.key.country, "France");
        assert_eq!(france.key.sale_date.to_string(), "2010-12-01");
        assert_eq!(france.totals.units_sold, 9);
        assert_eq!(france.totals.units_returned, 58);
        assert_eq!(france.totals.net_quantity, -49);
        assert_eq!(france.totals.gross_revenue, 15_300 + 375); // 15.300 + 0.375
        assert_eq!(france.totals.refunds, 5_100); // 2 × 2.55
        assert_eq!(france.totals.net_revenue, 15_675 - 5_100);
        assert_eq!(france.totals.order_lines, 4);
        assert_eq!(
            france.description.as_deref(),
            Some("D2"),
            "first non-empty description"
        );
        // Rows come in the order of their first lines, whatever the hasher's seed.
        assert_eq!(rows[1].key.sale_date.to_string(), "2010-12-02");
        assert_eq!(rows[1].totals.gross_revenue, 100);
        assert_eq!(rows[2].key.country, "Spain");
        assert_eq!(rows[2].description, None);
    }

    #[test]
    fn decimal_sums_do_not_drift_like_floats() {
        // 0.1 + 0.2 summed a thousand times in floating point is not 300.
        let events: Vec<_> = (0..2_000)
            .map(|i| {
                event(
                    i,
                    "2011-01-01T10:00:00",
                    "UK",
                    "X",
                    1,
                    if i % 2 == 0 { "0.1" } else { "0.2" },
                )
            })
            .collect();
        let rows = aggregate(&events).daily;
        assert_eq!(rows[0].totals.gross_revenue, 300_000);
    }

    #[test]
    fn an_invoice_interrupted_by_another_is_still_one_row() {
        // The last line's row is tried first; a line of another invoice in between must not
        // start a second row for the first.
        let mut lines = [
            event(1, "2010-12-01T08:26:00", "France", "A", 1, "1"),
            event(2, "2010-12-01T08:26:00", "France", "B", 2, "1"),
            event(3, "2010-12-01T08:27:00", "France", "C", 4, "1"),
            event(4, "2010-12-01T08:28:00", "France", "D", 8, "1"),
        ];
        lines[2].invoice_no = "2".into();
        let rows = aggregate(&lines).customers;
        let sums: Vec<_> = rows
            .iter()
            .map(|r| (r.key.invoice_no.as_str(), r.totals.net_quantity))
            .collect();
        assert_eq!(sums, [("1", 11), ("2", 4)]);
    }

    #[test]
    fn customer_rows_are_per_invoice_so_orders_count_exactly() {
        let mut lines = [
            event(1, "2010-12-01T08:26:00", "France", "A", 6, "2.55"),
            event(2, "2010-12-01T08:26:00", "France", "B", -1, "1.5"),
            event(3, "2010-12-01T09:00:00", "France", "A", 2, "2.55"),
            event(4, "2010-12-01T10:00:00", "France", "A", 1, "1"),
        ];
        lines[0].customer_id = Some("12345".into());
        lines[1].customer_id = Some("12345".into());
        lines[2].customer_id = Some("12345".into());
        lines[2].invoice_no = "2".into();
        // Line 4 names no customer: kept under NO_CUSTOMER.
        let (first, second) = lines.split_at(1);
        // One invoice split over two batches: each file has a row for it, and counting distinct
        // invoices over both still finds one order.
        let rows: Vec<_> = [aggregate(first), aggregate(second)]
            .into_iter()
            .flat_map(|rows| rows.customers)
            .collect();
        let key = |row: &CustomerSales| {
            (
                row.key.customer_id.clone(),
                row.key.invoice_no.clone(),
                row.totals.order_lines,
                row.totals.net_revenue,
            )
        };
        assert_eq!(
            rows.iter().map(key).collect::<Vec<_>>(),
            [
                ("12345".to_owned(), "1".to_owned(), 1, 15_300),
                ("12345".to_owned(), "1".to_owned(), 1, -1_500),
                ("12345".to_owned(), "2".to_owned(), 1, 5_100),
                (NO_CUSTOMER.to_owned(), "1".to_owned(), 1, 1_000),
            ]
        );
        let orders: std::collections::BTreeSet<_> = rows
            .iter()
            .filter(|r| r.key.customer_id == "12345")
            .map(|r| &r.key.invoice_no)
            .collect();
        assert_eq!(orders.len(), 2);
        assert_eq!(rows[1].totals.units_returned, 1);
        assert_eq!(rows[1].totals.refunds, 1_500);
    }
}

//! The aggregated tables, in exact decimals: daily sales per (sale date, country, stock code),
//! and customer sales per (sale date, customer, country, invoice).
//!
//! Money is summed as integer thousandths (the unscaled value of the lake's `decimal(38,3)`), so
//! no sum is ever rounded: `quantity × unit_price` of a valid event is exact in thousandths, and
//! fits `decimal(18,3)`, so no realistic number of events can overflow a sum.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sales_stream::SalesEvent;

/// The grouping key of `daily_sales`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DailyKey {
    pub sale_date: NaiveDate,
    pub country: String,
    pub stock_code: String,
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
pub struct DailySales {
    pub key: DailyKey,
    /// The first non-empty description seen for the product that day.
    pub description: Option<String>,
    pub totals: Totals,
}

impl DailySales {
    fn new(key: DailyKey) -> Self {
        Self {
            key,
            description: None,
            totals: Totals::default(),
        }
    }

    /// Adds one event. `amount` is its `quantity × unit_price` in thousandths.
    fn add(&mut self, event: &SalesEvent, amount: i128) {
        if self.description.is_none() {
            self.description = event.description.clone().filter(|d| !d.is_empty());
        }
        self.totals.add(event.quantity, amount);
    }
}

/// The grouping key of `customer_sales`: one invoice of one customer on one day.
///
/// The invoice is part of the key so that the number of orders stays exact however the lines of
/// one invoice are spread over shards, batches and files: `COUNT(DISTINCT invoice_no)` over any
/// set of rows counts each order once, where summing per-file order counts would count an
/// invoice split over two files twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerKey {
    pub sale_date: NaiveDate,
    /// [`NO_CUSTOMER`] for lines without a customer id.
    pub customer_id: String,
    pub country: String,
    pub invoice_no: String,
}

/// The `customer_id` of `customer_sales` rows whose lines name no customer (guest checkouts in
/// the Online Retail data): kept, and grouped together, rather than dropped.
pub const NO_CUSTOMER: &str = "";

/// One `customer_sales` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSales {
    pub key: CustomerKey,
    pub totals: Totals,
}

/// `daily_sales` rows built up one event at a time.
#[derive(Debug, Default)]
pub struct DailyAggregator {
    rows: BTreeMap<DailyKey, DailySales>,
}

impl DailyAggregator {
    /// Adds a valid event ([`SalesEvent::validate`]); one whose amount cannot be computed was
    /// refused before this point and is skipped.
    pub fn add(&mut self, event: &SalesEvent) {
        let Some(amount) = event.amount_thousandths() else {
            return;
        };
        let key = DailyKey {
            sale_date: event.event_time.date(),
            country: event.country.clone(),
            stock_code: event.stock_code.clone(),
        };
        self.rows
            .entry(key)
            .or_insert_with_key(|key| DailySales::new(key.clone()))
            .add(event, amount);
    }

    /// One row per key, in key order.
    pub fn finish(self) -> Vec<DailySales> {
        self.rows.into_values().collect()
    }
}

/// `customer_sales` rows built up one event at a time.
#[derive(Debug, Default)]
pub struct CustomerAggregator {
    rows: BTreeMap<CustomerKey, Totals>,
}

impl CustomerAggregator {
    /// Adds a valid event, as [`DailyAggregator::add`] does.
    pub fn add(&mut self, event: &SalesEvent) {
        let Some(amount) = event.amount_thousandths() else {
            return;
        };
        let key = CustomerKey {
            sale_date: event.event_time.date(),
            customer_id: event
                .customer_id
                .as_deref()
                .map(str::trim)
                .unwrap_or(NO_CUSTOMER)
                .to_owned(),
            country: event.country.clone(),
            invoice_no: event.invoice_no.clone(),
        };
        self.rows
            .entry(key)
            .or_default()
            .add(event.quantity, amount);
    }

    /// One row per key, in key order.
    pub fn finish(self) -> Vec<CustomerSales> {
        self.rows
            .into_iter()
            .map(|(key, totals)| CustomerSales { key, totals })
            .collect()
    }
}

/// Every table aggregated from accepted events (`daily_sales` and `customer_sales`), built up
/// together in one pass over the events.
#[derive(Debug, Default)]
pub struct Aggregates {
    daily: DailyAggregator,
    customers: CustomerAggregator,
}

/// The rows of the aggregated tables, each in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateRows {
    pub daily: Vec<DailySales>,
    pub customers: Vec<CustomerSales>,
}

impl Aggregates {
    pub fn add(&mut self, event: &SalesEvent) {
        self.daily.add(event);
        self.customers.add(event);
    }

    pub fn finish(self) -> AggregateRows {
        AggregateRows {
            daily: self.daily.finish(),
            customers: self.customers.finish(),
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
        // Rows come in key order: date, then country, then stock code.
        assert_eq!(rows[1].key.country, "Spain");
        assert_eq!(rows[1].description, None);
        assert_eq!(rows[2].key.sale_date.to_string(), "2010-12-02");
        assert_eq!(rows[2].totals.gross_revenue, 100);
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
                (NO_CUSTOMER.to_owned(), "1".to_owned(), 1, 1_000),
                ("12345".to_owned(), "1".to_owned(), 1, -1_500),
                ("12345".to_owned(), "2".to_owned(), 1, 5_100),
            ]
        );
        let orders: std::collections::BTreeSet<_> = rows
            .iter()
            .filter(|r| r.key.customer_id == "12345")
            .map(|r| &r.key.invoice_no)
            .collect();
        assert_eq!(orders.len(), 2);
        assert_eq!(rows[2].totals.units_returned, 1);
        assert_eq!(rows[2].totals.refunds, 1_500);
    }
}

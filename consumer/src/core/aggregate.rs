//! Daily sales per (sale date, country, stock code), in exact decimals.
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

/// One `daily_sales` row. Money fields are thousandths (`2.550` is `2550`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySales {
    pub key: DailyKey,
    /// The first non-empty description seen for the product that day.
    pub description: Option<String>,
    pub units_sold: i128,
    pub units_returned: i128,
    pub net_quantity: i128,
    pub gross_revenue: i128,
    pub refunds: i128,
    pub net_revenue: i128,
    pub order_lines: i64,
}

impl DailySales {
    fn new(key: DailyKey) -> Self {
        Self {
            key,
            description: None,
            units_sold: 0,
            units_returned: 0,
            net_quantity: 0,
            gross_revenue: 0,
            refunds: 0,
            net_revenue: 0,
            order_lines: 0,
        }
    }

    /// Adds one event. `amount` is its `quantity × unit_price` in thousandths.
    fn add(&mut self, event: &SalesEvent, amount: i128) {
        let quantity = i128::from(event.quantity);
        if self.description.is_none() {
            self.description = event.description.clone().filter(|d| !d.is_empty());
        }
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

/// Aggregates events into one row per key, in key order.
pub fn aggregate<'a>(events: impl IntoIterator<Item = &'a SalesEvent>) -> Vec<DailySales> {
    let mut aggregator = DailyAggregator::default();
    for event in events {
        aggregator.add(event);
    }
    aggregator.finish()
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
        let rows = aggregate(&events);
        assert_eq!(rows.len(), 3);
        let france = &rows[0];
        assert_eq!(france.key.country, "France");
        assert_eq!(france.key.sale_date.to_string(), "2010-12-01");
        assert_eq!(france.units_sold, 9);
        assert_eq!(france.units_returned, 58);
        assert_eq!(france.net_quantity, -49);
        assert_eq!(france.gross_revenue, 15_300 + 375); // 15.300 + 0.375
        assert_eq!(france.refunds, 5_100); // 2 × 2.55
        assert_eq!(france.net_revenue, 15_675 - 5_100);
        assert_eq!(france.order_lines, 4);
        assert_eq!(
            france.description.as_deref(),
            Some("D2"),
            "first non-empty description"
        );
        // Rows come in key order: date, then country, then stock code.
        assert_eq!(rows[1].key.country, "Spain");
        assert_eq!(rows[1].description, None);
        assert_eq!(rows[2].key.sale_date.to_string(), "2010-12-02");
        assert_eq!(rows[2].gross_revenue, 100);
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
        let rows = aggregate(&events);
        assert_eq!(rows[0].gross_revenue, 300_000);
    }
}

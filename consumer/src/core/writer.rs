//! The lake's Parquet files: their Arrow schemas, the writer properties (built in one place)
//! and the encoding of a batch's rows into file bytes.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Date32Builder, Decimal128Array, Decimal128Builder, Int64Array, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sales_stream::{SalesEvent, SalesEventRef, SequenceNumber};

use crate::core::aggregate::{CustomerKey, CustomerSales, DailyKey, DailySales, Line, Totals};

/// `decimal(18,3)`: a unit price, exact to a thousandth (what [`SalesEvent::validate`] admits).
pub const PRICE_PRECISION: u8 = 18;
/// `decimal(38,3)`: a sum of money. Each event's amount fits `decimal(18,3)`, so a sum of them
/// would need more than 10^20 events in one row to overflow it.
pub const SUM_PRECISION: u8 = 38;
pub const MONEY_SCALE: i8 = 3;

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A value does not fit its column (`bigint`, `decimal(18,3)` or `decimal(38,3)`).
    #[error("{column} = {value} does not fit the column type")]
    Overflow { column: &'static str, value: i128 },
    /// Arrow refused the columns (a bug: the schema and the builders disagree).
    #[error("building the record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The Parquet writer or reader failed.
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A file read back does not hold what the consumer writes.
    #[error("not a file of the lake's tables: {0}")]
    Unexpected(String),
}

/// Parquet compression of the lake's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    /// Smaller files; the default.
    #[default]
    Zstd,
    /// Faster to write and read.
    Snappy,
}

impl std::str::FromStr for Codec {
    type Err = String;

    /// `zstd` or `snappy`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "zstd" => Ok(Self::Zstd),
            "snappy" => Ok(Self::Snappy),
            _ => Err(format!(
                "{text:?} is not a Parquet compression: use zstd or snappy"
            )),
        }
    }
}

/// An accepted event with where it came from on the stream.
#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    pub event: SalesEvent,
    pub shard_id: String,
    pub sequence_number: SequenceNumber,
    pub arrival_time: DateTime<Utc>,
}

fn price() -> DataType {
    DataType::Decimal128(PRICE_PRECISION, MONEY_SCALE)
}

fn money_sum() -> DataType {
    DataType::Decimal128(SUM_PRECISION, MONEY_SCALE)
}

fn timestamp() -> DataType {
    // Milliseconds without a zone: the sale times are local, and Athena's timestamp is in ms.
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

static SALES_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_time", timestamp(), false),
        Field::new("invoice_no", DataType::Utf8, false),
        Field::new("stock_code", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("quantity", DataType::Int64, false),
        Field::new("unit_price", price(), false),
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("shard_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Utf8, false),
        Field::new("arrival_time", timestamp(), false),
    ]))
});

/// The sums both aggregated tables end with, in this order (see [`TotalsColumns`]).
fn totals_fields() -> [Field; 7] {
    [
        Field::new("units_sold", DataType::Int64, false),
        Field::new("units_returned", DataType::Int64, false),
        Field::new("net_quantity", DataType::Int64, false),
        Field::new("gross_revenue", money_sum(), false),
        Field::new("refunds", money_sum(), false),
        Field::new("net_revenue", money_sum(), false),
        Field::new("order_lines", DataType::Int64, false),
    ]
}

static DAILY_SALES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("sale_date", DataType::Date32, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("stock_code", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
    ];
    fields.extend(totals_fields());
    Arc::new(Schema::new(fields))
});

static CUSTOMER_SALES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("sale_date", DataType::Date32, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("invoice_no", DataType::Utf8, false),
    ];
    fields.extend(totals_fields());
    Arc::new(Schema::new(fields))
});

/// The columns of `sales_events` files (partition columns live in the path, not the file).
pub fn sales_events_schema() -> SchemaRef {
    SALES_EVENTS_SCHEMA.clone()
}

/// The columns of `daily_sales` files.
pub fn daily_sales_schema() -> SchemaRef {
    DAILY_SALES_SCHEMA.clone()
}

/// The columns of `customer_sales` files.
pub fn customer_sales_schema() -> SchemaRef {
    CUSTOMER_SALES_SCHEMA.clone()
}

/// Columns long and varied enough for compression to pay: the per-event text of `sales_events`.
const COMPRESSED_COLUMNS: [&str; 4] = ["event_id", "source", "sequence_number", "description"];

/// The money sums of the aggregated tables: `decimal(38,3)`, 16-byte values that rarely repeat,
/// which a dictionary would copy and hash one by one only to index (measured: 2-4% of the batch
/// step, for 0.4 more bytes an event).
const MONEY_SUMS: [&str; 3] = ["gross_revenue", "refunds", "net_revenue"];

/// Counts of the aggregated tables: small numbers in the order rows first appeared, nearly all
/// distinct from their neighbours. Delta-packed, not dictionary-encoded: a dictionary hashes each
/// value only to index a few hundred small numbers, and the packed deltas are smaller (half the
/// bytes of these columns written plain, and 1.4% fewer instructions in the batch step than with
/// the dictionary).
const COUNTS: [&str; 4] = [
    "units_sold",
    "units_returned",
    "net_quantity",
    "order_lines",
];

/// Times of `sales_events`: a batch's sale times and arrival times rise with the stream, so their
/// deltas pack into a few bits. Delta-packed, not dictionary-encoded: files as small, and no hash
/// of each value (0.8% of the batch step's instructions).
const TIMES: [&str; 2] = ["event_time", "arrival_time"];

/// Rows handed to each column's encoder at a time. parquet-rs's default of 1,024 cuts a batch's
/// file into ten slices, each paying the writer's per-slice bookkeeping (levels, page-size
/// checks, statistics); one slice for a default batch takes 1.2% fewer instructions. Pages still
/// close at parquet-rs's 20,000 rows or 1 MiB.
const WRITE_BATCH_ROWS: usize = 16_384;

/// Text columns whose min/max would skip nothing, so they get no statistics: the values of any one
/// file span the column's whole range (random ids, source lines, product codes and descriptions,
/// customer ids). Their statistics cost a comparison per value, a tenth of `sales_events`'
/// encoding (0.3 ms of 3.4 for 10,000 events). Dates, times, invoices, countries, shards and
/// sequence numbers keep theirs.
const UNPRUNABLE: [&str; 5] = [
    "event_id",
    "source",
    "stock_code",
    "description",
    "customer_id",
];

/// The one place Parquet writer settings are chosen.
///
/// The chosen codec applies to the long text columns, where the bytes are; the rest are
/// dictionary-encoded (a page of small integers and a dictionary of a few hundred codes or
/// countries) or numbers, and get snappy. Why not zstd everywhere: parquet-rs builds a zstd
/// compressor and decompressor for each column of each file, and each probes the CPU's features;
/// that measured about 30 µs a column on the bench machine, which for a batch spread over forty
/// days (120 files of 11 to 13 columns) cost more than all its other work. Snappy costs nothing
/// to set up, and the lake is 6% larger than with zstd everywhere (`make bench`). zstd's level 1
/// compresses these columns as small as level 3 did (34.0 against 34.5 bytes an event) in about
/// half the time.
pub fn writer_properties(codec: Codec) -> WriterProperties {
    let compression = match codec {
        Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
        Codec::Snappy => Compression::SNAPPY,
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        // Page statistics let DuckDB, DataFusion and Athena skip pages by min/max.
        .set_statistics_enabled(EnabledStatistics::Page)
        // Every event id and source line is distinct: a dictionary would only be built to be
        // dropped.
        .set_column_dictionary_enabled("event_id".into(), false)
        .set_column_dictionary_enabled("source".into(), false)
        // The ids' lengths apart from their text: plain encoding puts a 4-byte length before
        // each 36-byte id, and those repeats are short matches zstd stops to take, at half its
        // speed on the hex alone (measured: 1.5 ms against 0.6 ms for 10,000 ids, and smaller).
        .set_column_encoding("event_id".into(), Encoding::DELTA_LENGTH_BYTE_ARRAY)
        // A batch of plain records has a sequence number per event, each sharing most of its
        // digits with the one before: prefix-encoded, not a dictionary of 10,000 entries.
        .set_column_dictionary_enabled("sequence_number".into(), false)
        .set_column_encoding("sequence_number".into(), Encoding::DELTA_BYTE_ARRAY)
        // An invoice's lines come one after another, so snappy shrinks the plain repeats as well
        // as a dictionary would, without hashing each; in `customer_sales` nearly every row is a
        // new invoice. (Files the same size, 1.4% fewer instructions in the batch step.)
        .set_column_dictionary_enabled("invoice_no".into(), false)
        .set_write_batch_size(WRITE_BATCH_ROWS)
        .set_created_by(format!("sales-lake consumer {}", env!("CARGO_PKG_VERSION")));
    for column in COMPRESSED_COLUMNS {
        builder = builder.set_column_compression(column.into(), compression);
    }
    for column in MONEY_SUMS {
        builder = builder.set_column_dictionary_enabled(column.into(), false);
    }
    for column in COUNTS.into_iter().chain(TIMES) {
        builder = builder
            .set_column_dictionary_enabled(column.into(), false)
            .set_column_encoding(column.into(), Encoding::DELTA_BINARY_PACKED);
    }
    for column in UNPRUNABLE {
        builder = builder.set_column_statistics_enabled(column.into(), EnabledStatistics::None);
    }
    builder.build()
}

/// [`writer_properties`], built once per codec: every file of every batch uses them.
fn shared_properties(codec: Codec) -> WriterProperties {
    static ZSTD: LazyLock<WriterProperties> = LazyLock::new(|| writer_properties(Codec::Zstd));
    static SNAPPY: LazyLock<WriterProperties> = LazyLock::new(|| writer_properties(Codec::Snappy));
    match codec {
        Codec::Zstd => ZSTD.clone(),
        Codec::Snappy => SNAPPY.clone(),
    }
}

fn to_parquet(batch: &RecordBatch, codec: Codec) -> Result<Vec<u8>, WriterError> {
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(shared_properties(codec)))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(bytes)
}

/// `value` if it fits `decimal(precision, 3)`.
fn decimal_value(column: &'static str, value: i128, precision: u8) -> Result<i128, WriterError> {
    let max = 10_i128.pow(u32::from(precision)) - 1;
    if value.unsigned_abs() > max.unsigned_abs() {
        return Err(WriterError::Overflow { column, value });
    }
    Ok(value)
}

fn bigint(column: &'static str, value: i128) -> Result<i64, WriterError> {
    i64::try_from(value).map_err(|_| WriterError::Overflow { column, value })
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (date - epoch).num_days() as i32
}

fn decimal_builder(capacity: usize, precision: u8) -> Result<Decimal128Builder, WriterError> {
    Ok(Decimal128Builder::with_capacity(capacity)
        .with_precision_and_scale(precision, MONEY_SCALE)?)
}

/// The `sales_events` columns, filled an event at a time (as records are decoded, or from
/// events read back) and finished into one record batch.
#[derive(Debug)]
pub struct SalesEventsBuilder {
    event_id: StringBuilder,
    event_time: TimestampMillisecondBuilder,
    invoice_no: StringBuilder,
    stock_code: StringBuilder,
    description: StringBuilder,
    quantity: Int64Builder,
    unit_price: Decimal128Builder,
    customer_id: StringBuilder,
    country: StringBuilder,
    source: StringBuilder,
    shard_id: StringBuilder,
    sequence_number: StringBuilder,
    arrival_time: TimestampMillisecondBuilder,
}

impl SalesEventsBuilder {
    /// Room for `capacity` events of about the usual size.
    pub fn with_capacity(capacity: usize) -> Self {
        let text =
            |bytes_each: usize| StringBuilder::with_capacity(capacity, capacity * bytes_each);
        Self {
            event_id: text(36),
            event_time: TimestampMillisecondBuilder::with_capacity(capacity),
            invoice_no: text(8),
            stock_code: text(8),
            description: text(32),
            quantity: Int64Builder::with_capacity(capacity),
            unit_price: Decimal128Builder::with_capacity(capacity).with_data_type(price()),
            customer_id: text(8),
            country: text(16),
            source: text(24),
            shard_id: text(24),
            sequence_number: text(56),
            arrival_time: TimestampMillisecondBuilder::with_capacity(capacity),
        }
    }

    /// Appends a valid event ([`sales_stream::SalesEventRef::validate`]) and where it was read.
    pub fn append(
        &mut self,
        event: &SalesEventRef,
        shard_id: &str,
        sequence_number: &str,
        arrival_millis: i64,
    ) -> Result<(), WriterError> {
        let price = event
            .unit_price_thousandths()
            .ok_or(WriterError::Overflow {
                column: "unit_price",
                value: event.unit_price.mantissa(),
            })?;
        self.unit_price
            .append_value(decimal_value("unit_price", price, PRICE_PRECISION)?);
        self.event_id.append_value(
            event
                .event_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        self.event_time
            .append_value(event.event_time.and_utc().timestamp_millis());
        self.invoice_no.append_value(&event.invoice_no);
        self.stock_code.append_value(&event.stock_code);
        self.description.append_option(event.description.as_deref());
        self.quantity.append_value(event.quantity);
        self.customer_id.append_option(event.customer_id.as_deref());
        self.country.append_value(&event.country);
        self.source.append_value(&event.source);
        self.shard_id.append_value(shard_id);
        self.sequence_number.append_value(sequence_number);
        self.arrival_time.append_value(arrival_millis);
        Ok(())
    }

    /// The events of `parts`, in order, as one record batch: the later parts' columns are
    /// appended to the first's (which has room for them when it was made with it).
    pub fn finish_parts(parts: Vec<Self>) -> Result<RecordBatch, WriterError> {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Self::with_capacity(0).finish();
        };
        for mut part in parts {
            all.event_id.append_array(&part.event_id.finish())?;
            all.event_time.append_array(&part.event_time.finish());
            all.invoice_no.append_array(&part.invoice_no.finish())?;
            all.stock_code.append_array(&part.stock_code.finish())?;
            all.description.append_array(&part.description.finish())?;
            all.quantity.append_array(&part.quantity.finish());
            all.unit_price.append_array(&part.unit_price.finish());
            all.customer_id.append_array(&part.customer_id.finish())?;
            all.country.append_array(&part.country.finish())?;
            all.source.append_array(&part.source.finish())?;
            all.shard_id.append_array(&part.shard_id.finish())?;
            all.sequence_number
                .append_array(&part.sequence_number.finish())?;
            all.arrival_time.append_array(&part.arrival_time.finish());
        }
        all.finish()
    }

    pub fn finish(mut self) -> Result<RecordBatch, WriterError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.invoice_no.finish()),
            Arc::new(self.stock_code.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.unit_price.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.shard_id.finish()),
            Arc::new(self.sequence_number.finish()),
            Arc::new(self.arrival_time.finish()),
        ];
        Ok(RecordBatch::try_new(sales_events_schema(), columns)?)
    }
}

/// The columns of a `sales_events` record batch, typed: what aggregation reads of each row.
#[derive(Debug)]
pub struct SalesEventsColumns<'a> {
    invoice_no: &'a StringArray,
    stock_code: &'a StringArray,
    description: &'a StringArray,
    quantity: &'a Int64Array,
    unit_price: &'a Decimal128Array,
    customer_id: &'a StringArray,
    country: &'a StringArray,
}

impl<'a> SalesEventsColumns<'a> {
    /// The columns of a batch with the `sales_events` schema, as [`SalesEventsBuilder`] makes
    /// it: the schema's non-null columns hold no nulls.
    pub fn of(batch: &'a RecordBatch) -> Result<Self, WriterError> {
        fn column<'a, T: 'static>(
            batch: &'a RecordBatch,
            name: &str,
        ) -> Result<&'a T, WriterError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| WriterError::Unexpected(format!("no column {name} of its type")))
        }
        Ok(Self {
            invoice_no: column(batch, "invoice_no")?,
            stock_code: column(batch, "stock_code")?,
            description: column(batch, "description")?,
            quantity: column(batch, "quantity")?,
            unit_price: column(batch, "unit_price")?,
            customer_id: column(batch, "customer_id")?,
            country: column(batch, "country")?,
        })
    }

    /// Row `row`, whose event fell on `sale_date`, as a sales line. The date is the caller's,
    /// from the event as decoded: the stored milliseconds of a leap second (`23:59:60`) read as
    /// the next midnight.
    pub fn line(&self, row: usize, sale_date: NaiveDate) -> Line<'a> {
        let text = |array: &'a StringArray| array.is_valid(row).then(|| array.value(row));
        let quantity = self.quantity.value(row);
        Line {
            sale_date,
            invoice_no: self.invoice_no.value(row),
            stock_code: self.stock_code.value(row),
            description: text(self.description),
            customer_id: text(self.customer_id),
            country: self.country.value(row),
            quantity,
            amount: self.unit_price.value(row) * i128::from(quantity),
        }
    }
}

/// The `sales_events` rows of one partition as a record batch.
pub fn sales_events_batch(rows: &[&AcceptedEvent]) -> Result<RecordBatch, WriterError> {
    let mut builder = SalesEventsBuilder::with_capacity(rows.len());
    for row in rows {
        builder.append(
            &row.event.as_ref(),
            &row.shard_id,
            row.sequence_number.as_str(),
            row.arrival_time.timestamp_millis(),
        )?;
    }
    builder.finish()
}

/// The builders of the sums both aggregated tables end with ([`totals_fields`]).
struct TotalsColumns {
    units_sold: Int64Builder,
    units_returned: Int64Builder,
    net_quantity: Int64Builder,
    gross_revenue: Decimal128Builder,
    refunds: Decimal128Builder,
    net_revenue: Decimal128Builder,
    order_lines: Int64Builder,
}

impl TotalsColumns {
    fn with_capacity(n: usize) -> Result<Self, WriterError> {
        Ok(Self {
            units_sold: Int64Builder::with_capacity(n),
            units_returned: Int64Builder::with_capacity(n),
            net_quantity: Int64Builder::with_capacity(n),
            gross_revenue: decimal_builder(n, SUM_PRECISION)?,
            refunds: decimal_builder(n, SUM_PRECISION)?,
            net_revenue: decimal_builder(n, SUM_PRECISION)?,
            order_lines: Int64Builder::with_capacity(n),
        })
    }

    /// Appends one row's sums; a sum its column cannot hold is an error, never wrapped.
    fn append(&mut self, totals: &Totals) -> Result<(), WriterError> {
        let money = |column, value| decimal_value(column, value, SUM_PRECISION);
        self.units_sold
            .append_value(bigint("units_sold", totals.units_sold)?);
        self.units_returned
            .append_value(bigint("units_returned", totals.units_returned)?);
        self.net_quantity
            .append_value(bigint("net_quantity", totals.net_quantity)?);
        self.gross_revenue
            .append_value(money("gross_revenue", totals.gross_revenue)?);
        self.refunds.append_value(money("refunds", totals.refunds)?);
        self.net_revenue
            .append_value(money("net_revenue", totals.net_revenue)?);
        self.order_lines.append_value(totals.order_lines);
        Ok(())
    }

    fn finish(mut self) -> [ArrayRef; 7] {
        [
            Arc::new(self.units_sold.finish()),
            Arc::new(self.units_returned.finish()),
            Arc::new(self.net_quantity.finish()),
            Arc::new(self.gross_revenue.finish()),
            Arc::new(self.refunds.finish()),
            Arc::new(self.net_revenue.finish()),
            Arc::new(self.order_lines.finish()),
        ]
    }
}

/// The `daily_sales` rows of one partition as a record batch.
pub fn daily_sales_batch<S: AsRef<str>>(
    rows: &[&DailySales<S>],
) -> Result<RecordBatch, WriterError> {
    let n = rows.len();
    let mut sale_date = Date32Builder::with_capacity(n);
    let mut country = StringBuilder::new();
    let mut stock_code = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut totals = TotalsColumns::with_capacity(n)?;
    for row in rows {
        sale_date.append_value(days_since_epoch(row.key.sale_date));
        country.append_value(&row.key.country);
        stock_code.append_value(&row.key.stock_code);
        description.append_option(row.description.as_ref());
        totals.append(&row.totals)?;
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(sale_date.finish()),
        Arc::new(country.finish()),
        Arc::new(stock_code.finish()),
        Arc::new(description.finish()),
    ];
    columns.extend(totals.finish());
    Ok(RecordBatch::try_new(daily_sales_schema(), columns)?)
}

/// The `customer_sales` rows of one partition as a record batch.
pub fn customer_sales_batch<S: AsRef<str>>(
    rows: &[&CustomerSales<S>],
) -> Result<RecordBatch, WriterError> {
    let n = rows.len();
    let mut sale_date = Date32Builder::with_capacity(n);
    let mut customer_id = StringBuilder::new();
    let mut country = StringBuilder::new();
    let mut invoice_no = StringBuilder::new();
    let mut totals = TotalsColumns::with_capacity(n)?;
    for row in rows {
        sale_date.append_value(days_since_epoch(row.key.sale_date));
        customer_id.append_value(&row.key.customer_id);
        country.append_value(&row.key.country);
        invoice_no.append_value(&row.key.invoice_no);
        totals.append(&row.totals)?;
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(sale_date.finish()),
        Arc::new(customer_id.finish()),
        Arc::new(country.finish()),
        Arc::new(invoice_no.finish()),
    ];
    columns.extend(totals.finish());
    Ok(RecordBatch::try_new(customer_sales_schema(), columns)?)
}

/// Encodes `sales_events` rows as one Parquet file.
pub fn encode_sales_events(rows: &[&AcceptedEvent], codec: Codec) -> Result<Vec<u8>, WriterError> {
    to_parquet(&sales_events_batch(rows)?, codec)
}

/// Encodes a `sales_events` record batch as one Parquet file.
pub fn encode_sales_events_batch(
    batch: &RecordBatch,
    codec: Codec,
) -> Result<Vec<u8>, WriterError> {
    to_parquet(batch, codec)
}

/// Encodes `daily_sales` rows as one Parquet file.
pub fn encode_daily_sales<S: AsRef<str>>(
    rows: &[&DailySales<S>],
    codec: Codec,
) -> Result<Vec<u8>, WriterError> {
    to_parquet(&daily_sales_batch(rows)?, codec)
}

/// Encodes `customer_sales` rows as one Parquet file.
pub fn encode_customer_sales<S: AsRef<str>>(
    rows: &[&CustomerSales<S>],
    codec: Codec,
) -> Result<Vec<u8>, WriterError> {
    to_parquet(&customer_sales_batch(rows)?, codec)
}

/// A `sales_events` file written one record batch at a time: compaction holds a batch of rows in
/// memory, not the whole day.
#[derive(Debug)]
pub struct SalesEventsWriter {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
}

impl SalesEventsWriter {
    pub fn new(codec: Codec) -> Result<Self, WriterError> {
        Ok(Self {
            writer: ArrowWriter::try_new(
                Vec::new(),
                sales_events_schema(),
                Some(shared_properties(codec)),
            )?,
            rows: 0,
        })
    }

    pub fn write(&mut self, rows: &[&AcceptedEvent]) -> Result<(), WriterError> {
        if !rows.is_empty() {
            self.writer.write(&sales_events_batch(rows)?)?;
            self.rows += rows.len();
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The file's bytes, footer included.
    pub fn finish(self) -> Result<Vec<u8>, WriterError> {
        Ok(self.writer.into_inner()?)
    }
}

/// Reads a `sales_events` file back, a record batch of events at a time: the inverse of
/// [`encode_sales_events`], for compaction.
pub fn read_sales_events(
    bytes: Vec<u8>,
) -> Result<impl Iterator<Item = Result<Vec<AcceptedEvent>, WriterError>>, WriterError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    Ok(reader.map(|batch| events_of(&batch?)))
}

/// The event ids of a `sales_events` file (only that column is decoded).
pub fn sales_events_ids(bytes: Vec<u8>) -> Result<Vec<uuid::Uuid>, WriterError> {
    use arrow::array::AsArray;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?;
    let column = builder
        .schema()
        .index_of("event_id")
        .map_err(|_| WriterError::Unexpected("no column event_id".into()))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let mut ids = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let array = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| WriterError::Unexpected("event_id is not a string".into()))?;
        for id in array.iter().flatten() {
            ids.push(
                id.parse().map_err(|_| {
                    WriterError::Unexpected(format!("event_id {id:?} is not a UUID"))
                })?,
            );
        }
    }
    Ok(ids)
}

/// Reads a whole `sales_events` file back.
pub fn decode_sales_events(bytes: Vec<u8>) -> Result<Vec<AcceptedEvent>, WriterError> {
    let mut events = Vec::new();
    for batch in read_sales_events(bytes)? {
        events.extend(batch?);
    }
    Ok(events)
}

/// One record batch of an aggregated table read back: its sale dates, the text columns asked
/// for (by name), and the seven sums, row by row.
struct AggregateBatch {
    dates: Vec<NaiveDate>,
    text: std::collections::HashMap<&'static str, Vec<Option<String>>>,
    totals: Vec<Totals>,
}

impl AggregateBatch {
    /// The value of a key column, which is never null in a file the consumer wrote.
    fn key(&self, name: &'static str, row: usize) -> Result<String, WriterError> {
        self.text
            .get(name)
            .and_then(|values| values[row].clone())
            .ok_or_else(|| WriterError::Unexpected(format!("{name} is null in row {row}")))
    }
}

/// Reads the record batches of a `daily_sales` or `customer_sales` file.
fn read_aggregates(
    bytes: Vec<u8>,
    text_columns: &[&'static str],
) -> Result<Vec<AggregateBatch>, WriterError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let unexpected = |what: String| WriterError::Unexpected(what);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| unexpected(format!("no column {name}")))
        };
        let bigint = |name: &str| -> Result<Vec<i64>, WriterError> {
            let array = column(name)?;
            let array = array
                .as_primitive_opt::<Int64Type>()
                .filter(|a| a.null_count() == 0)
                .ok_or_else(|| unexpected(format!("{name} is not a bigint without nulls")))?;
            Ok(array.values().to_vec())
        };
        let money = |name: &str| -> Result<Vec<i128>, WriterError> {
            let array = column(name)?;
            let array = array
                .as_primitive_opt::<Decimal128Type>()
                .filter(|a| a.scale() == MONEY_SCALE && a.null_count() == 0)
                .ok_or_else(|| unexpected(format!("{name} is not a decimal(_,3) without nulls")))?;
            Ok(array.values().to_vec())
        };
        let mut text = std::collections::HashMap::new();
        for name in text_columns {
            let array = column(name)?;
            let array = array
                .as_string_opt::<i32>()
                .ok_or_else(|| unexpected(format!("{name} is not a string")))?;
            text.insert(*name, array.iter().map(|v| v.map(str::to_owned)).collect());
        }
        let dates = column("sale_date")?;
        let dates = dates
            .as_primitive_opt::<Date32Type>()
            .ok_or_else(|| unexpected("sale_date is not a date".into()))?;
        let dates = (0..batch.num_rows())
            .map(|row| {
                dates
                    .value_as_date(row)
                    .ok_or_else(|| unexpected(format!("sale_date in row {row}")))
            })
            .collect::<Result<_, _>>()?;
        let (units_sold, units_returned, net_quantity, order_lines) = (
            bigint("units_sold")?,
            bigint("units_returned")?,
            bigint("net_quantity")?,
            bigint("order_lines")?,
        );
        let (gross_revenue, refunds, net_revenue) = (
            money("gross_revenue")?,
            money("refunds")?,
            money("net_revenue")?,
        );
        let totals = (0..batch.num_rows())
            .map(|row| Totals {
                units_sold: i128::from(units_sold[row]),
                units_returned: i128::from(units_returned[row]),
                net_quantity: i128::from(net_quantity[row]),
                gross_revenue: gross_revenue[row],
                refunds: refunds[row],
                net_revenue: net_revenue[row],
                order_lines: order_lines[row],
            })
            .collect();
        batches.push(AggregateBatch {
            dates,
            text,
            totals,
        });
    }
    Ok(batches)
}

/// Reads a `daily_sales` file back into its rows (`consumer verify`).
pub fn read_daily_sales(bytes: Vec<u8>) -> Result<Vec<DailySales>, WriterError> {
    let mut rows = Vec::new();
    for batch in read_aggregates(bytes, &["country", "stock_code", "description"])? {
        for (row, totals) in batch.totals.iter().enumerate() {
            rows.push(DailySales {
                key: DailyKey {
                    sale_date: batch.dates[row],
                    country: batch.key("country", row)?,
                    stock_code: batch.key("stock_code", row)?,
                },
                description: batch.text["description"][row].clone(),
                totals: *totals,
            });
        }
    }
    Ok(rows)
}

/// Reads a `customer_sales` file back into its rows (`consumer verify`).
pub fn read_customer_sales(bytes: Vec<u8>) -> Result<Vec<CustomerSales>, WriterError> {
    let mut rows = Vec::new();
    for batch in read_aggregates(bytes, &["customer_id", "country", "invoice_no"])? {
        for (row, totals) in batch.totals.iter().enumerate() {
            rows.push(CustomerSales {
                key: CustomerKey {
                    sale_date: batch.dates[row],
                    customer_id: batch.key("customer_id", row)?,
                    country: batch.key("country", row)?,
                    invoice_no: batch.key("invoice_no", row)?,
                },
                totals: *totals,
            });
        }
    }
    Ok(rows)
}

/// The events of one record batch of a `sales_events` file.
fn events_of(batch: &RecordBatch) -> Result<Vec<AcceptedEvent>, WriterError> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMillisecondType};

    let unexpected = |what: String| WriterError::Unexpected(what);
    let mut events = Vec::with_capacity(batch.num_rows());
    {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| unexpected(format!("no column {name}")))
        };
        let strings = |name: &str| -> Result<Vec<Option<String>>, WriterError> {
            let array = column(name)?;
            let array = array
                .as_string_opt::<i32>()
                .ok_or_else(|| unexpected(format!("{name} is not a string")))?;
            Ok(array.iter().map(|v| v.map(str::to_owned)).collect())
        };
        let times = |name: &str| -> Result<Vec<i64>, WriterError> {
            let array = column(name)?;
            let array = array
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| unexpected(format!("{name} is not a timestamp")))?;
            Ok(array.values().to_vec())
        };
        let quantity = column("quantity")?;
        let quantity = quantity
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| unexpected("quantity is not a bigint".into()))?
            .clone();
        let unit_price = column("unit_price")?;
        let unit_price = unit_price
            .as_primitive_opt::<Decimal128Type>()
            .ok_or_else(|| unexpected("unit_price is not a decimal".into()))?
            .clone();
        let (event_id, invoice_no, stock_code, description) = (
            strings("event_id")?,
            strings("invoice_no")?,
            strings("stock_code")?,
            strings("description")?,
        );
        let (customer_id, country, source) = (
            strings("customer_id")?,
            strings("country")?,
            strings("source")?,
        );
        let (shard_id, sequence_number) = (strings("shard_id")?, strings("sequence_number")?);
        let (event_time, arrival_time) = (times("event_time")?, times("arrival_time")?);
        let required = |values: &[Option<String>], name: &str, row: usize| {
            values[row]
                .clone()
                .ok_or_else(|| unexpected(format!("{name} is null in row {row}")))
        };
        for row in 0..batch.num_rows() {
            let id = required(&event_id, "event_id", row)?;
            let sequence = required(&sequence_number, "sequence_number", row)?;
            let event = SalesEvent {
                event_id: id
                    .parse()
                    .map_err(|_| unexpected(format!("event_id {id:?} is not a UUID")))?,
                event_time: DateTime::from_timestamp_millis(event_time[row])
                    .ok_or_else(|| unexpected(format!("event_time in row {row}")))?
                    .naive_utc(),
                invoice_no: required(&invoice_no, "invoice_no", row)?,
                stock_code: required(&stock_code, "stock_code", row)?,
                description: description[row].clone(),
                quantity: quantity.value(row),
                unit_price: rust_decimal::Decimal::from_i128_with_scale(
                    unit_price.value(row),
                    MONEY_SCALE as u32,
                ),
                customer_id: customer_id[row].clone(),
                country: required(&country, "country", row)?,
                source: required(&source, "source", row)?,
            };
            events.push(AcceptedEvent {
                event,
                shard_id: required(&shard_id, "shard_id", row)?,
                sequence_number: SequenceNumber::parse(&sequence).ok_or_else(|| {
                    unexpected(format!("sequence_number {sequence:?} is not a number"))
                })?,
                arrival_time: DateTime::from_timestamp_millis(arrival_time[row])
                    .ok_or_else(|| unexpected(format!("arrival_time in row {row}")))?,
            });
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::aggregate::aggregate;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
    use bytes_reader::read_back;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    #[test]
    fn the_codec_applies_to_long_text_and_snappy_to_the_rest() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let row = accepted(1, 2, "1.5", Some("X"));
        for (codec, zstd) in [(Codec::Zstd, true), (Codec::Snappy, false)] {
            let bytes = encode_sales_events(&[&row], codec).expect("encodes");
            let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("reads");
            for column in reader.metadata().row_group(0).columns() {
                let name = column.column_path().string();
                let long_text = ["event_id", "source", "sequence_number", "description"];
                let compressed = zstd && long_text.contains(&name.as_str());
                assert_eq!(
                    matches!(column.compression(), Compression::ZSTD(_)),
                    compressed,
                    "{name}: {:?}",
                    column.compression()
                );
                if !compressed {
                    assert_eq!(column.compression(), Compression::SNAPPY, "{name}");
                }
            }
        }
    }

    #[test]
    fn ids_sequence_numbers_times_and_invoices_skip_the_dictionary_and_read_back() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let mut second = accepted(2, 3, "2", None);
        second.sequence_number =
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588899")
                .expect("seq");
        let rows = [accepted(1, 2, "1.5", Some("X")), second];
        let refs: Vec<_> = rows.iter().collect();
        let bytes = encode_sales_events(&refs, Codec::Zstd).expect("encodes");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).expect("reads");
        let encodings = |name: &str| {
            let columns = reader.metadata().row_group(0).columns().iter();
            let mut found = columns.filter(|c| c.column_path().string() == name);
            found
                .next()
                .expect("column")
                .encodings()
                .collect::<Vec<_>>()
        };
        assert!(encodings("event_id").contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY));
        let delta = TIMES.map(|time| (time, Encoding::DELTA_BINARY_PACKED));
        for (column, encoding) in [("sequence_number", Encoding::DELTA_BYTE_ARRAY)]
            .into_iter()
            .chain(delta)
        {
            let found = encodings(column);
            assert!(found.contains(&encoding), "{column}: {found:?}");
            assert!(
                !found.contains(&Encoding::RLE_DICTIONARY),
                "{column}: {found:?}"
            );
        }
        assert!(!encodings("invoice_no").contains(&Encoding::RLE_DICTIONARY));
        let events = decode_sales_events(bytes).expect("reads back");
        let ids: Vec<_> = events.iter().map(|e| e.event.event_id).collect();
        assert_eq!(ids, [rows[0].event.event_id, rows[1].event.event_id]);
        assert_eq!(events[1].sequence_number, rows[1].sequence_number);
    }

    mod bytes_reader {
        use arrow::array::RecordBatch;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        pub fn read_back(
            bytes: Vec<u8>,
        ) -> (RecordBatch, parquet::file::metadata::ParquetMetaData) {
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .expect("parquet");
            let metadata = builder.metadata().as_ref().clone();
            let mut reader = builder.build().expect("reader");
            (reader.next().expect("a batch").expect("readable"), metadata)
        }
    }

    fn accepted(line: u64, quantity: i64, price: &str, description: Option<&str>) -> AcceptedEvent {
        AcceptedEvent {
            event: SalesEvent {
                event_id: sales_stream::event_id("t.csv", line),
                event_time: chrono::NaiveDateTime::from_str("2011-12-09T12:50:00").expect("time"),
                invoice_no: "581587".into(),
                stock_code: "22899".into(),
                description: description.map(str::to_owned),
                quantity,
                unit_price: Decimal::from_str(price).expect("price"),
                customer_id: None,
                country: "France".into(),
                source: format!("t.csv:{line}"),
            },
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::parse(
                "49590338271490256608559692538361571095921575989136588898",
            )
            .expect("seq"),
            arrival_time: DateTime::from_timestamp_millis(1_700_000_000_000).expect("time"),
        }
    }

    #[test]
    fn sales_events_read_back_with_exact_types() {
        let rows = [
            accepted(2, 6, "2.55", Some("HEART")),
            accepted(3, -1, "0.125", None),
        ];
        let refs: Vec<_> = rows.iter().collect();
        let (batch, metadata) =
            read_back(encode_sales_events(&refs, Codec::Zstd).expect("encodes"));
        assert_eq!(batch.schema(), sales_events_schema());
        assert_eq!(batch.num_rows(), 2);
        let price = batch
            .column_by_name("unit_price")
            .expect("column")
            .as_primitive::<Decimal128Type>();
        assert_eq!((price.value(0), price.value(1)), (2_550, 125));
        assert_eq!(price.value_as_string(1), "0.125");
        let description = batch
            .column_by_name("description")
            .expect("column")
            .as_string::<i32>();
        assert!(description.is_null(1));
        let seq = batch
            .column_by_name("sequence_number")
            .expect("column")
            .as_string::<i32>();
        assert_eq!(
            seq.value(0),
            "49590338271490256608559692538361571095921575989136588898"
        );
        let quantity = batch
            .column_by_name("quantity")
            .expect("column")
            .as_primitive::<Int64Type>();
        assert_eq!(quantity.value(1), -1);
        let event_time = metadata.row_group(0).column(1);
        assert!(
            event_time.statistics().is_some(),
            "column statistics are written"
        );
        for column in metadata.row_group(0).columns() {
            let name = column.column_path().string();
            let pruning = !UNPRUNABLE.contains(&name.as_str());
            assert_eq!(column.statistics().is_some(), pruning, "{name}");
        }
        let event_id = metadata.row_group(0).column(0);
        assert!(matches!(event_id.compression(), Compression::ZSTD(_)));
    }

    #[test]
    fn daily_sales_read_back_with_exact_sums() {
        let rows = [
            accepted(2, 6, "2.55", None),
            accepted(3, -2, "2.55", Some("X")),
            accepted(4, 3, "0.125", None),
        ];
        let daily = aggregate(rows.iter().map(|r| &r.event)).daily;
        let refs: Vec<_> = daily.iter().collect();
        let file = encode_daily_sales(&refs, Codec::Snappy).expect("encodes");
        assert_eq!(read_daily_sales(file.clone()).expect("reads"), daily);
        let (batch, metadata) = read_back(file);
        assert_eq!(batch.schema(), daily_sales_schema());
        let money = |name| {
            batch
                .column_by_name(name)
                .expect("column")
                .as_primitive::<Decimal128Type>()
                .value_as_string(0)
        };
        assert_eq!(money("gross_revenue"), "15.675");
        assert_eq!(money("refunds"), "5.100");
        assert_eq!(money("net_revenue"), "10.575");
        for column in metadata.row_group(0).columns() {
            let name = column.column_path().string();
            let dictionary = column.encodings().any(|e| e == Encoding::RLE_DICTIONARY);
            let packed = column
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED);
            let name = name.as_str();
            let plain = MONEY_SUMS.contains(&name) || COUNTS.contains(&name);
            assert_eq!(dictionary, !plain, "{name}");
            assert_eq!(packed, COUNTS.contains(&name), "{name}");
        }
        let date = batch
            .column_by_name("sale_date")
            .expect("column")
            .as_primitive::<Date32Type>();
        assert_eq!(
            date.value_as_date(0).map(|d| d.to_string()).as_deref(),
            Some("2011-12-09")
        );
        assert!(matches!(
            metadata.row_group(0).column(0).compression(),
            Compression::SNAPPY
        ));
    }

    #[test]
    fn customer_sales_read_back_per_invoice() {
        let mut rows = [accepted(2, 6, "2.55", None), accepted(3, -2, "2.55", None)];
        rows[0].event.customer_id = Some("17850".into());
        let customers = aggregate(rows.iter().map(|r| &r.event)).customers;
        let refs: Vec<_> = customers.iter().collect();
        let file = encode_customer_sales(&refs, Codec::Zstd).expect("encodes");
        assert_eq!(read_customer_sales(file.clone()).expect("reads"), customers);
        let (batch, _) = read_back(file);
        assert_eq!(batch.schema(), customer_sales_schema());
        assert_eq!(batch.num_rows(), 2, "one row per customer and invoice");
        let text = |name| {
            let column = batch
                .column_by_name(name)
                .expect("column")
                .as_string::<i32>();
            (0..column.len())
                .map(|i| column.value(i).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text("customer_id"),
            ["17850", ""],
            "no customer: the empty id"
        );
        let revenue = batch
            .column_by_name("net_revenue")
            .expect("column")
            .as_primitive::<Decimal128Type>();
        assert_eq!(revenue.value_as_string(0), "15.300");
        assert_eq!(revenue.value_as_string(1), "-5.100");
    }

    #[test]
    fn sums_that_do_not_fit_are_errors_not_wrapped() {
        let mut row = aggregate([&accepted(2, 1, "1", None).event]).daily[0].clone();
        // decimal(38,3) holds sums far beyond decimal(18,3) ...
        row.totals.gross_revenue = 10_i128.pow(30);
        let (batch, _) = read_back(encode_daily_sales(&[&row], Codec::Zstd).expect("fits"));
        let gross = batch
            .column_by_name("gross_revenue")
            .expect("column")
            .as_primitive::<Decimal128Type>();
        assert_eq!(gross.value(0), 10_i128.pow(30));
        assert_eq!(gross.precision(), 38);
        // ... and refuses what it cannot hold.
        row.totals.gross_revenue = 10_i128.pow(38);
        assert!(matches!(
            encode_daily_sales(&[&row], Codec::Zstd),
            Err(WriterError::Overflow {
                column: "gross_revenue",
                ..
            })
        ));
        row.totals.gross_revenue = 0;
        row.totals.units_sold = i128::from(i64::MAX) + 1;
        assert!(matches!(
            encode_daily_sales(&[&row], Codec::Zstd),
            Err(WriterError::Overflow {
                column: "units_sold",
                ..
            })
        ));
    }
}

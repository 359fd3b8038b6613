//! Where rows come from: the inputs `--input` names (files, globs, standard input, gzip), how
//! each is read (delimiter, encoding, columns, the order of day and month in its dates), and a
//! reader and row parser for each. Shared by `producer` and by `consumer verify`, which must
//! read a file exactly as it was sent.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use flate2::bufread::MultiGzDecoder;

use sales_stream::EventIds;

use crate::batcher::EventKey;
use crate::columns::{ColumnMap, ColumnOverride, Field};
use crate::dates::{DateOrder, DateParser, DetectedOrder, OrderDetector};
use crate::read_ahead::ReadAhead;
use crate::reader::{CsvReader, Line, ReadError, TextEncoding};
use crate::row::RowParser;
use crate::source::Source;

/// How an input's rows are read.
#[derive(Debug, Clone, Default, Args)]
pub struct InputArgs {
    /// Field delimiter [default: detected from the header: `,`, `;` or tab].
    #[arg(long, env = "PRODUCER_DELIMITER", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Text encoding of the input, by its WHATWG label (utf-8, windows-1252, latin1,
    /// iso-8859-15, ...) [default: UTF-8 where valid, Windows-1252 otherwise].
    #[arg(long, env = "PRODUCER_ENCODING", value_name = "LABEL", value_parser = TextEncoding::from_label)]
    pub encoding: Option<TextEncoding>,
    /// strftime format of InvoiceDate [default: the forms real exports use, with day or month
    /// first detected from the file's dates].
    #[arg(long, env = "PRODUCER_DATE_FORMAT")]
    pub date_format: Option<String>,
    /// Columns of other layouts, as FIELD=HEADER (fields: invoice_no, stock_code, description,
    /// quantity, invoice_date, unit_price, customer_id, country).
    #[arg(long, env = "PRODUCER_COLUMNS", value_delimiter = ',')]
    pub columns: Vec<ColumnOverride>,
}

/// One input opened for reading: its rows, how to turn them into events, and how its dates
/// are read.
pub struct OpenedInput {
    pub reader: CsvReader<Box<dyn BufRead + Send>>,
    pub parser: RowParser,
    pub dates: DateOrigin,
}

impl std::fmt::Debug for OpenedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedInput")
            .field("header", &self.reader.header())
            .field("parser", &self.parser)
            .field("dates", &self.dates)
            .finish_non_exhaustive()
    }
}

/// Opens `input` to be read: its header checked, its source identified ([`source_of`]: the
/// `--source-id`, or a digest of the file) and the order of its dates settled ([`date_origin`]).
/// The digest and the dates each read the whole file before it is streamed; they run at once,
/// on two threads.
pub fn open_rows(
    input: &Path,
    options: &InputArgs,
    source_id: Option<&str>,
) -> anyhow::Result<OpenedInput> {
    let (source, dates) = std::thread::scope(|scope| {
        let source = scope.spawn(|| source_of(input, source_id));
        let dates = date_origin(input, options);
        let source = source
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (source, dates)
    });
    let source = source?;
    let reader = open_reader(input, options)?;
    let columns = ColumnMap::from_header(reader.header(), &options.columns)
        .with_context(|| format!("{}", input.display()))?;
    let dates = dates?;
    let date_parser = DateParser::new(options.date_format.clone()).with_order(dates.order());
    Ok(OpenedInput {
        reader,
        parser: RowParser::new(columns, date_parser, source),
        dates,
    })
}

/// A line as the packing thread takes it, with its event's key where that was derived ahead
/// ([`crate::ReadAhead`]; `None` where the thread derives it).
pub type KeyedLine = (Line, Option<EventKey>);

/// The lines of `reader` with no key derived ahead.
pub fn unkeyed<R: BufRead>(
    reader: CsvReader<R>,
) -> impl Iterator<Item = Result<KeyedLine, ReadError>> {
    reader.map(|line| line.map(|line| (line, None)))
}

/// The lines of a CSV input, however they are read.
pub type Lines = Box<dyn Iterator<Item = Result<KeyedLine, ReadError>> + Send>;

/// The lines of `reader`, opened on `input`: when `input` is a regular file, read a chunk ahead
/// on a thread of their own, which also derives each record's [`EventKey`] from `ids` (with its
/// hash key if `hashed`; none for the first `skip_rows` rows, which are not sent), so the second
/// core reads while the first packs; as they come otherwise (standard input or a pipe, where a
/// chunk would wait on lines that may be slow).
pub fn lines_of(
    input: &Path,
    reader: CsvReader<Box<dyn BufRead + Send>>,
    ids: EventIds,
    hashed: bool,
    skip_rows: u64,
) -> anyhow::Result<Lines> {
    let regular_file = input.as_os_str() != "-"
        && std::fs::metadata(input).is_ok_and(|metadata| metadata.is_file());
    if !regular_file {
        return Ok(Box::new(unkeyed(reader)));
    }
    read_ahead(reader, ids, hashed, skip_rows)
}

/// The lines of `reader` read a chunk ahead on a thread of their own, which derives the
/// [`EventKey`] of each record after the first `skip_rows` rows (rows counted as the packing
/// thread counts them: every line it is given) from `ids`, with its hash key if `hashed`.
pub fn read_ahead<R: BufRead + Send + 'static>(
    reader: CsvReader<R>,
    ids: EventIds,
    hashed: bool,
    skip_rows: u64,
) -> anyhow::Result<Lines> {
    let mut row = 0_u64;
    let key = move |line: &Line| {
        row += 1;
        match line {
            Line::Record(record) if row > skip_rows => {
                Some(EventKey::derive(&ids, record.line, hashed))
            }
            _ => None,
        }
    };
    let lines = ReadAhead::spawn(reader, key)
        .context("cannot start the thread that reads the input ahead")?;
    Ok(Box::new(lines))
}

/// The source `input` is read as: the file itself, or for standard input the `--source-id`.
pub fn source_of(input: &Path, source_id: Option<&str>) -> anyhow::Result<Source> {
    Ok(match source_id {
        Some(id) => Source::named(id),
        None if input.as_os_str() == "-" => bail!(
            "standard input needs --source-id: event ids are derived from it, so give the \
             same id to the same data and different ids to different data"
        ),
        None => Source::of_file(input)
            .with_context(|| format!("cannot read input {}", input.display()))?,
    })
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!(
            "expected one ASCII character or `tab`, got {text:?}"
        )),
    }
}

/// The gzip magic number (RFC 1952): gzip input is recognised by content, not by name, so a
/// piped `.csv.gz` works too.
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

pub fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let mut input: Box<dyn BufRead + Send> = if path.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let file =
            File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            bail!("input {} is a directory, not a CSV file", path.display());
        }
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let head = input
        .fill_buf()
        .with_context(|| format!("cannot read input {}", path.display()))?;
    if head.starts_with(&GZIP_MAGIC) {
        input = Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(input),
        ));
    }
    Ok(input)
}

/// What a rejects file's name ends with.
pub const REJECTS_SUFFIX: &str = ".rejects.csv";

/// The inputs `--input` names, in order: each pattern with `*`, `?` or `[` expanded (sorted),
/// `-` (standard input) only alone. Rejects files are never matched.
pub fn input_paths(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if given.is_empty() {
        bail!(
            "--input is required: a CSV file, a quoted glob, or - for standard input (see producer --help)"
        );
    }
    let mut paths = Vec::new();
    for input in given {
        let text = input.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            paths.push(input.clone());
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(&text)
            .with_context(|| format!("--input {text:?} is not a valid pattern"))?
            .filter_map(Result::ok)
            // A pattern such as `exports/*.csv` also matches the rejects files an earlier run
            // wrote beside its inputs: they are our output, never an input.
            .filter(|path| path.is_file() && !path.to_string_lossy().ends_with(REJECTS_SUFFIX))
            .collect();
        if matched.is_empty() {
            bail!("no file matches --input {text:?}");
        }
        matched.sort();
        paths.append(&mut matched);
    }
    if paths.len() > 1 && paths.iter().any(|p| p.as_os_str() == "-") {
        bail!("standard input (-) is read alone: give it as the only --input");
    }
    Ok(paths)
}

/// The input's CSV reader, its header read.
pub fn open_reader(
    input: &Path,
    options: &InputArgs,
) -> anyhow::Result<CsvReader<Box<dyn BufRead + Send>>> {
    let encoding = options.encoding.unwrap_or_default();
    CsvReader::with_encoding(open_input(input)?, options.delimiter, encoding)
        .with_context(|| format!("cannot read {}", input.display()))
}

/// How the order of day and month is chosen for `input`.
pub fn date_origin(input: &Path, options: &InputArgs) -> anyhow::Result<DateOrigin> {
    Ok(match (&options.date_format, input.as_os_str() == "-") {
        (Some(_), _) => DateOrigin::Format,
        // Standard input is read once: month first, as the Online Retail exports are.
        (None, true) => DateOrigin::Unscanned,
        (None, false) => {
            let detected = detect_date_order(
                input,
                options.delimiter,
                options.encoding.unwrap_or_default(),
                &options.columns,
            )?;
            if detected.ambiguous {
                eprintln!(
                    "note: no date in {} says whether it is day or month first (every day is 12 \
                     or less): reading month first; if it is day first, pass --date-format \
                     '%d/%m/%Y %H:%M' (or the form its dates take)",
                    input.display()
                );
            }
            DateOrigin::Detected(detected)
        }
    })
}

/// How the order of day and month in the input's dates was chosen.
#[derive(Debug, Clone, Copy)]
pub enum DateOrigin {
    /// `--date-format` gives the one form.
    Format,
    /// A first pass over the file's dates.
    Detected(DetectedOrder),
    /// Standard input, read once: month first.
    Unscanned,
}

impl DateOrigin {
    pub fn order(&self) -> DateOrder {
        match self {
            Self::Detected(detected) => detected.order,
            Self::Format | Self::Unscanned => DateOrder::MonthFirst,
        }
    }
}

impl std::fmt::Display for DateOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Format => f.write_str("as --date-format says"),
            Self::Detected(DetectedOrder {
                order,
                ambiguous: false,
            }) => write!(f, "{order} (detected)"),
            Self::Detected(DetectedOrder { order, .. }) => {
                write!(f, "{order} (assumed: no date settles it)")
            }
            Self::Unscanned => f.write_str("month first (standard input is not scanned ahead)"),
        }
    }
}

/// Reads the input's date column once to tell whether its dates are day or month first.
fn detect_date_order(
    input: &Path,
    delimiter: Option<u8>,
    encoding: TextEncoding,
    columns: &[ColumnOverride],
) -> anyhow::Result<DetectedOrder> {
    let mut reader = CsvReader::with_encoding(open_input(input)?, delimiter, encoding)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let columns = ColumnMap::from_header(reader.header(), columns)?;
    let mut detector = OrderDetector::default();
    if let Some(index) = columns.index(Field::InvoiceDate) {
        reader
            .for_each_field(index, columns.width(), |date, line| {
                detector.observe(date, line)
            })
            .with_context(|| format!("cannot read {}", input.display()))?;
    }
    Ok(detector.verdict()?)
}

//! Reading a Data Exports data file, Parquet or gzip CSV, row by row, into named cells; every error names
//! the file and, where there is one, the row (data rows counted from 1) and the column.

use std::io::Read;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

/// A data file that cannot be read or mapped: which file, row and column, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bill file {file}{}: {reason}", at(*.row, .column.as_deref()))]
pub struct BillError {
    pub file: String,
    pub row: Option<u64>,
    pub column: Option<String>,
    pub reason: String,
}

fn at(row: Option<u64>, column: Option<&str>) -> String {
    match (row, column) {
        (Some(r), Some(c)) => format!(", row {r}, column {c}"),
        (Some(r), None) => format!(", row {r}"),
        (None, Some(c)) => format!(", column {c}"),
        (None, None) => String::new(),
    }
}

impl BillError {
    pub fn file(file: &str, reason: impl Into<String>) -> Self {
        Self { file: file.to_string(), row: None, column: None, reason: reason.into() }
    }
}

/// How a data file is written, from its name (`…-00001.snappy.parquet`, `…-00001.csv.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    CsvGz,
}

impl Format {
    pub fn of(key: &str) -> Option<Self> {
        if key.ends_with(".parquet") {
            Some(Self::Parquet)
        } else if key.ends_with(".csv.gz") {
            Some(Self::CsvGz)
        } else {
            None
        }
    }
}

/// A cell: empty, text (numbers as their decimal text), or an instant (Parquet timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(String),
    TimeNs(u64),
}

/// One data row: the file's columns and this row's cells.
pub struct Record<'a> {
    pub file: &'a str,
    pub row: u64,
    columns: &'a [String],
    cells: &'a [Cell],
}

impl Record<'_> {
    /// The file's columns, in order.
    pub fn columns(&self) -> &[String] {
        self.columns
    }

    /// The cell of `column`; `None` when the file has no such column.
    pub fn get(&self, column: &str) -> Option<&Cell> {
        self.columns.iter().position(|c| c == column).map(|i| &self.cells[i])
    }

    /// The text of `column`; empty when it is empty or missing.
    pub fn text(&self, column: &str) -> String {
        match self.get(column) {
            Some(Cell::Text(t)) => t.clone(),
            Some(Cell::TimeNs(ns)) => gpucost_types::period::utc(*ns),
            _ => String::new(),
        }
    }

    /// The text of `column`, which must be there and not empty.
    pub fn required_text(&self, column: &str) -> Result<String, BillError> {
        match self.get(column) {
            None => Err(self.error(column, "missing: the file has no such column")),
            Some(Cell::Null) => Err(self.error(column, "empty")),
            _ => Ok(self.text(column)),
        }
    }

    /// `column` in nano-units (`amount::nano`); `None` when it is empty or missing.
    pub fn amount(&self, column: &str) -> Result<Option<i64>, BillError> {
        match self.get(column) {
            None | Some(Cell::Null) => Ok(None),
            Some(Cell::Text(t)) => super::amount::nano(t).map(Some).map_err(|e| self.error(column, e)),
            Some(Cell::TimeNs(_)) => Err(self.error(column, "a timestamp, not an amount")),
        }
    }

    /// `column` as an instant; it must be there and not empty.
    pub fn instant(&self, column: &str) -> Result<u64, BillError> {
        match self.get(column) {
            None => Err(self.error(column, "missing: the file has no such column")),
            Some(Cell::Null) => Err(self.error(column, "empty")),
            Some(Cell::TimeNs(ns)) => Ok(*ns),
            Some(Cell::Text(t)) => super::amount::instant(t).map_err(|e| self.error(column, e)),
        }
    }

    /// An error at this row and `column`.
    pub fn error(&self, column: &str, reason: impl Into<String>) -> BillError {
        BillError {
            file: self.file.to_string(),
            row: Some(self.row),
            column: Some(column.to_string()),
            reason: reason.into(),
        }
    }
}

/// Calls `each` with every data row of `bytes` (the file `file`, written as `format`) in order; stops at the
/// first error, its or the file's. Returns the number of rows.
pub fn rows(
    file: &str,
    bytes: Vec<u8>,
    format: Format,
    each: &mut dyn FnMut(&Record<'_>) -> Result<(), BillError>,
) -> Result<u64, BillError> {
    match format {
        Format::Parquet => parquet_rows(file, bytes, each),
        Format::CsvGz => csv_rows(file, &bytes, each),
    }
}

fn csv_rows(
    file: &str,
    bytes: &[u8],
    each: &mut dyn FnMut(&Record<'_>) -> Result<(), BillError>,
) -> Result<u64, BillError> {
    let gz = flate2::read::MultiGzDecoder::new(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(gz);
    let bad = |row: Option<u64>, e: &dyn std::fmt::Display| BillError {
        file: file.to_string(),
        row,
        column: None,
        reason: format!("not a readable gzip CSV file: {e}"),
    };
    let columns: Vec<String> = reader.headers().map_err(|e| bad(None, &e))?.iter().map(str::to_string).collect();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(bad(Some(row + 1), &e)),
        }
        row += 1;
        let cells: Vec<Cell> =
            record.iter().map(|v| if v.is_empty() { Cell::Null } else { Cell::Text(v.to_string()) }).collect();
        each(&Record { file, row, columns: &columns, cells: &cells })?;
    }
    // A gzip stream cut short reads as a short file; the decoder says so only at its end.
    let mut rest = Vec::new();
    reader.into_inner().read_to_end(&mut rest).map_err(|e| bad(Some(row), &e))?;
    Ok(row)
}

fn parquet_rows(
    file: &str,
    bytes: Vec<u8>,
    each: &mut dyn FnMut(&Record<'_>) -> Result<(), BillError>,
) -> Result<u64, BillError> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| BillError::file(file, format!("not a whole Parquet file (truncated or corrupt?): {e}")))?;
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| BillError::file(file, format!("not a readable Parquet file (truncated or corrupt?): {e}")))?;
    let mut row = 0u64;
    let mut cells = vec![Cell::Null; columns.len()];
    for r in iter {
        let r = r.map_err(|e| BillError {
            file: file.to_string(),
            row: Some(row + 1),
            column: None,
            reason: format!("not a readable Parquet row (truncated or corrupt?): {e}"),
        })?;
        row += 1;
        for (name, field) in r.get_column_iter() {
            let Some(i) = columns.iter().position(|c| c == name) else { continue };
            cells[i] = cell(field);
        }
        each(&Record { file, row, columns: &columns, cells: &cells })?;
    }
    Ok(row)
}

fn cell(f: &Field) -> Cell {
    match f {
        Field::Null => Cell::Null,
        Field::Str(s) => Cell::Text(s.clone()),
        // Rust prints a double's shortest round-trip decimal, never an exponent.
        Field::Double(v) => Cell::Text(format!("{v}")),
        Field::Float(v) => Cell::Text(format!("{v}")),
        Field::TimestampMillis(ms) if *ms >= 0 => Cell::TimeNs(*ms as u64 * 1_000_000),
        Field::TimestampMicros(us) if *us >= 0 => Cell::TimeNs(*us as u64 * 1_000),
        Field::Date(d) if *d >= 0 => Cell::TimeNs(*d as u64 * 86_400_000_000_000),
        other => Cell::Text(other.to_string()),
    }
}

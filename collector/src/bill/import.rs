//! Importing Data Exports deliveries into the ledger: each manifest found (one per export and billing period)
//! is one delivery; one already stored (same execution id, files and ETags) is skipped without reading its
//! files; otherwise every data file it lists is read and mapped (CUR 2.0 or FOCUS 1.2, by its columns) and
//! the whole delivery replaces the period's earlier one in one transaction. A file that cannot be read or
//! mapped refuses its delivery whole, with its file, row and column; what was stored before stays.

use std::sync::Arc;

use gpucost_ledger::Ledger;
use gpucost_ledger::bill::{BillDelivery, BillFileLines, BillImport, BillLine};

use super::manifest::{self, Manifest};
use super::read::{self, BillError, Format, Record};
use super::source::Source;
use super::{cur, focus};

/// What importing one manifest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub manifest: String,
    pub export: String,
    pub billing_period: String,
    pub files: usize,
    pub outcome: BillImport,
}

/// Why a manifest was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] BillError),
    #[error("{0}")]
    Source(String),
    #[error("storing {manifest}: {error}")]
    Ledger { manifest: String, error: gpucost_ledger::LedgerError },
}

/// The schemas a data file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Cur2,
    Focus12,
}

impl Schema {
    pub fn of(columns: &[String]) -> Option<Self> {
        if cur::is_cur2(columns) {
            Some(Self::Cur2)
        } else if focus::is_focus(columns) {
            Some(Self::Focus12)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cur2 => "cur2",
            Self::Focus12 => "focus1.2",
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Self::Cur2 => cur::REQUIRED,
            Self::Focus12 => focus::REQUIRED,
        }
    }

    fn line(self, r: &Record<'_>) -> Result<BillLine, BillError> {
        match self {
            Self::Cur2 => cur::line(r),
            Self::Focus12 => focus::line(r),
        }
    }
}

/// Imports every delivery in `source` (of `export` only, if given), each on its own; one result per manifest.
pub async fn import_all(
    source: &Source,
    ledger: &Arc<dyn Ledger>,
    export: Option<&str>,
    now_ns: u64,
) -> Result<Vec<(String, Result<Imported, ImportError>)>, ImportError> {
    let keys =
        source.manifests().await.map_err(|e| ImportError::Source(format!("listing {}: {e}", source.describe())))?;
    let mut out = Vec::new();
    for key in keys {
        let result = import_one(source, ledger, &key, export, now_ns).await;
        match result {
            Ok(None) => {}
            Ok(Some(i)) => out.push((key, Ok(i))),
            Err(e) => out.push((key, Err(e))),
        }
    }
    Ok(out)
}

/// Imports the delivery of the manifest at `key`; `None` when it is of another export than `export`.
pub async fn import_one(
    source: &Source,
    ledger: &Arc<dyn Ledger>,
    key: &str,
    export: Option<&str>,
    now_ns: u64,
) -> Result<Option<Imported>, ImportError> {
    let json = source.get(key).await.map_err(ImportError::Source)?;
    let m = manifest::parse(key, &json).map_err(ImportError::Source)?;
    if export.is_some_and(|e| e != m.export) {
        return Ok(None);
    }
    let mut files = Vec::new();
    for uri in &m.data_files {
        let data_key = source.data_key(&m, uri).map_err(ImportError::Source)?;
        let etag = source.etag(&data_key).await.map_err(ImportError::Source)?;
        files.push((data_key, etag));
    }
    let stored = {
        let (ledger, m, files) = (ledger.clone(), m.clone(), files.clone());
        tokio::task::spawn_blocking(move || {
            ledger.bill_delivery_stored(&m.export, &m.billing_period, &m.execution_id, &files)
        })
        .await
        .map_err(|e| ImportError::Source(e.to_string()))?
        .map_err(|error| ImportError::Ledger { manifest: key.to_string(), error })?
    };
    let imported = |outcome| Imported {
        manifest: key.to_string(),
        export: m.export.clone(),
        billing_period: m.billing_period.clone(),
        files: files.len(),
        outcome,
    };
    if stored {
        return Ok(Some(imported(BillImport::Unchanged)));
    }
    let mut delivery = BillDelivery {
        export: m.export.clone(),
        billing_period: m.billing_period.clone(),
        execution_id: m.execution_id.clone(),
        manifest_key: key.to_string(),
        schema: Schema::of(&m.columns).map_or("", Schema::name).to_string(),
        files: Vec::new(),
    };
    for (data_key, etag) in &files {
        let bytes = source.get(data_key).await.map_err(ImportError::Source)?;
        let (m2, file) = (m.clone(), data_key.clone());
        let (lines, schema) = tokio::task::spawn_blocking(move || lines_of(&m2, &file, bytes))
            .await
            .map_err(|e| ImportError::Source(e.to_string()))??;
        if let Some(s) = schema {
            delivery.schema = s.name().to_string();
        }
        delivery.files.push(BillFileLines { key: data_key.clone(), etag: etag.clone(), lines });
    }
    let outcome = {
        let ledger = ledger.clone();
        tokio::task::spawn_blocking(move || ledger.put_bill_delivery(&delivery, now_ns))
            .await
            .map_err(|e| ImportError::Source(e.to_string()))?
            .map_err(|error| ImportError::Ledger { manifest: key.to_string(), error })?
    };
    Ok(Some(imported(outcome)))
}

/// The lines of the data file `file` of the delivery `m`, and its schema (`None` for a file without rows).
pub fn lines_of(m: &Manifest, file: &str, bytes: Vec<u8>) -> Result<(Vec<BillLine>, Option<Schema>), BillError> {
    let format = Format::of(file)
        .ok_or_else(|| BillError::file(file, "neither Parquet (.parquet) nor gzip CSV (.csv.gz) by its name"))?;
    let mut lines = Vec::new();
    let mut schema = None;
    read::rows(file, bytes, format, &mut |r| {
        let s = match schema {
            Some(s) => s,
            None => {
                let s = Schema::of(r.columns()).ok_or_else(|| {
                    BillError::file(
                        file,
                        "neither CUR 2.0 nor FOCUS 1.2: no line_item_line_item_type or BilledCost column",
                    )
                })?;
                if let Some(c) = s.required().iter().find(|c| !r.columns().iter().any(|h| h == *c)) {
                    return Err(BillError {
                        file: file.to_string(),
                        row: None,
                        column: Some(c.to_string()),
                        reason: format!("missing: a {} file must have it", s.name()),
                    });
                }
                schema = Some(s);
                s
            }
        };
        let line = s.line(r)?;
        if line.billing_period != m.billing_period {
            let column = if s == Schema::Cur2 { "bill_billing_period_start_date" } else { "BillingPeriodStart" };
            return Err(r.error(
                column,
                format!("billing period {} in a delivery for {}", line.billing_period, m.billing_period),
            ));
        }
        lines.push(line);
        Ok(())
    })?;
    Ok((lines, schema))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn delivery() -> Manifest {
        Manifest {
            key: "b/cur/metadata/BILLING_PERIOD=2026-11/cur-Manifest.json".into(),
            export: "cur".into(),
            billing_period: "2026-11".into(),
            execution_id: "e1".into(),
            columns: Vec::new(),
            data_files: Vec::new(),
        }
    }

    const CUR: &str = "bill_billing_period_start_date,line_item_usage_start_date,line_item_usage_end_date,\
line_item_line_item_type,line_item_usage_type,line_item_resource_id,pricing_term,line_item_unblended_cost,\
savings_plan_savings_plan_effective_cost\n";

    #[test]
    fn cur_csv_rows_become_bill_lines_and_a_bad_value_names_its_row_and_column() {
        let text = format!(
            "{CUR}2026-11-01T00:00:00Z,2026-11-03T04:00:00Z,2026-11-03T05:00:00Z,SavingsPlanCoveredUsage,\
BoxUsage:p5.48xlarge,i-0abc,OnDemand,98.32,61.2000000004\n\
2026-11-01T00:00:00Z,2026-11-03T04:00:00Z,2026-11-03T05:00:00Z,Usage,SpotUsage:g5.xlarge,i-0def,,0.45,\n"
        );
        let (lines, schema) = lines_of(&delivery(), "f.csv.gz", gz(&text)).unwrap();
        assert_eq!(schema, Some(Schema::Cur2));
        assert_eq!(lines.len(), 2);
        let (a, b) = (&lines[0], &lines[1]);
        assert_eq!(
            (a.row, a.line_item_type.as_str(), a.instance_type.as_str()),
            (1, "SavingsPlanCoveredUsage", "p5.48xlarge")
        );
        assert_eq!((a.unblended_nano, a.sp_effective_nano), (Some(98_320_000_000), Some(61_200_000_000)));
        assert_eq!(a.usage_start_ns, 1_793_491_200_000_000_000 + (2 * 24 + 4) * 3_600_000_000_000);
        assert_eq!((b.pricing_term.as_str(), b.sp_effective_nano, b.resource_id.as_str()), ("Spot", None, "i-0def"));

        let bad = text.replace("0.45", "n/a");
        let e = lines_of(&delivery(), "f.csv.gz", gz(&bad)).unwrap_err();
        assert_eq!((e.row, e.column.as_deref()), (Some(2), Some("line_item_unblended_cost")));
        assert_eq!(
            e.to_string(),
            "bill file f.csv.gz, row 2, column line_item_unblended_cost: not a decimal number: \"n/a\""
        );

        let other_month = text.replacen("2026-11-01T00:00:00Z", "2026-10-01T00:00:00Z", 1);
        let e = lines_of(&delivery(), "f.csv.gz", gz(&other_month)).unwrap_err();
        assert_eq!((e.row, e.column.as_deref()), (Some(1), Some("bill_billing_period_start_date")));

        let cut = gz(&text);
        let e = lines_of(&delivery(), "f.csv.gz", cut[..cut.len() - 12].to_vec()).unwrap_err();
        assert!(e.reason.contains("not a readable gzip CSV file"), "{e}");
        let e = lines_of(&delivery(), "f.csv.gz", gz("a,b\n1,2\n")).unwrap_err();
        assert!(e.reason.contains("neither CUR 2.0 nor FOCUS 1.2"), "{e}");
        let e = lines_of(&delivery(), "f.json", Vec::new()).unwrap_err();
        assert!(e.reason.contains("neither Parquet"), "{e}");
    }

    #[test]
    fn a_focus_file_without_a_required_column_is_refused_naming_it() {
        let text = "BillingPeriodStart,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,BilledCost\n\
2026-11-01 00:00:00.000,2026-11-01 00:00:00.000,2026-11-01 01:00:00.000,Usage,1.5\n";
        let e = lines_of(&delivery(), "f.csv.gz", gz(text)).unwrap_err();
        assert_eq!((e.row, e.column.as_deref()), (None, Some("EffectiveCost")));
        let ok = text.replace("BilledCost\n", "BilledCost,EffectiveCost\n").replace(",1.5\n", ",1.5,1.25\n");
        let (lines, schema) = lines_of(&delivery(), "f.csv.gz", gz(&ok)).unwrap();
        assert_eq!(schema, Some(Schema::Focus12));
        assert_eq!((lines[0].unblended_nano, lines[0].effective_nano), (Some(1_500_000_000), Some(1_250_000_000)));
    }
}

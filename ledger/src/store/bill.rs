//! The AWS bill's deliveries and lines (`crate::bill`) on every engine: a billing period of an export replaced
//! whole, in one transaction, under an advisory lock so two importers sharing a database take turns.

use super::{Engine, SqlLedger};
use crate::bill::{BillDelivery, BillFile, BillImport, BillLine, BillStore};
use crate::sql::{Db, Tx};
use crate::{LedgerError, sql_params};

/// The advisory-lock space under which bill imports take turns.
const BILL_LOCK: i32 = 5;

/// The stored (key, ETag, execution id) of an export's billing period, by key.
fn stored_files(db: &impl Db, export: &str, period: &str) -> Result<Vec<(String, String, String)>, LedgerError> {
    Ok(db.all(
        "SELECT file_key, etag, execution_id FROM bill_files WHERE export_name = $1 AND billing_period = $2
         ORDER BY file_key",
        sql_params![export, period],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// Whether the stored files are exactly `files` ((key, ETag) pairs) of `execution_id`.
fn same(stored: &[(String, String, String)], execution_id: &str, files: &[(String, String)]) -> bool {
    let mut wanted: Vec<&(String, String)> = files.iter().collect();
    wanted.sort();
    !stored.is_empty()
        && stored.len() == wanted.len()
        && stored.iter().zip(wanted).all(|((k, e, x), (wk, we))| k == wk && e == we && x == execution_id)
}

impl<E: Engine> BillStore for SqlLedger<E> {
    fn put_bill_delivery(&self, d: &BillDelivery, now_ns: u64) -> Result<BillImport, LedgerError> {
        let files: Vec<(String, String)> = d.files.iter().map(|f| (f.key.clone(), f.etag.clone())).collect();
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = Tx::begin(&guard.conn, self.engine.begin())?;
        tx.exclusive(BILL_LOCK, 0)?;
        let stored = stored_files(&*tx, &d.export, &d.billing_period)?;
        if same(&stored, &d.execution_id, &files) {
            return Ok(BillImport::Unchanged);
        }
        let old_lines: i64 = tx.one(
            "SELECT CAST(COALESCE(SUM(line_count), 0) AS BIGINT) FROM bill_files
             WHERE export_name = $1 AND billing_period = $2",
            sql_params![d.export, d.billing_period],
            |r| r.get(0),
        )?;
        // The period's earlier delivery, and any file of this one stored under another period (a key moves
        // with its file, whatever period it was in).
        let keys: Vec<&str> = d.files.iter().map(|f| f.key.as_str()).collect();
        tx.run(
            "DELETE FROM bill_lines WHERE file_id IN (SELECT file_id FROM bill_files
             WHERE export_name = $1 AND billing_period = $2)",
            sql_params![d.export, d.billing_period],
        )?;
        tx.run(
            "DELETE FROM bill_files WHERE export_name = $1 AND billing_period = $2",
            sql_params![d.export, d.billing_period],
        )?;
        for key in &keys {
            tx.run(
                "DELETE FROM bill_lines WHERE file_id IN (SELECT file_id FROM bill_files
                 WHERE export_name = $1 AND file_key = $2)",
                sql_params![d.export, key],
            )?;
            tx.run("DELETE FROM bill_files WHERE export_name = $1 AND file_key = $2", sql_params![d.export, key])?;
        }
        let mut lines = 0u64;
        for f in &d.files {
            let file_id: i64 = tx.one(
                "INSERT INTO bill_files (export_name, billing_period, file_key, etag, execution_id, manifest_key,
                 schema_name, line_count, imported_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING file_id",
                sql_params![
                    d.export,
                    d.billing_period,
                    f.key,
                    f.etag,
                    d.execution_id,
                    d.manifest_key,
                    d.schema,
                    f.lines.len() as i64,
                    now_ns as i64
                ],
                |r| r.get(0),
            )?;
            for l in &f.lines {
                insert_line(&*tx, file_id, l)?;
            }
            lines += f.lines.len() as u64;
        }
        tx.commit()?;
        Ok(if stored.is_empty() {
            BillImport::Imported { lines }
        } else {
            BillImport::Replaced { lines, old_lines: old_lines as u64 }
        })
    }

    fn bill_delivery_stored(
        &self,
        export: &str,
        billing_period: &str,
        execution_id: &str,
        files: &[(String, String)],
    ) -> Result<bool, LedgerError> {
        self.with_reader(|c| Ok(same(&stored_files(c, export, billing_period)?, execution_id, files)))
    }

    fn bill_files(&self) -> Result<Vec<BillFile>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                "SELECT export_name, billing_period, file_key, etag, execution_id, manifest_key, schema_name,
                 line_count, imported_ns FROM bill_files ORDER BY export_name, billing_period, file_key",
                sql_params![],
                |r| {
                    Ok(BillFile {
                        export: r.get(0)?,
                        billing_period: r.get(1)?,
                        key: r.get(2)?,
                        etag: r.get(3)?,
                        execution_id: r.get(4)?,
                        manifest_key: r.get(5)?,
                        schema: r.get(6)?,
                        lines: r.get::<i64>(7)? as u64,
                        imported_ns: r.get::<i64>(8)? as u64,
                    })
                },
            )?)
        })
    }

    fn bill_lines(&self, export: &str, billing_period: &str) -> Result<Vec<(String, BillLine)>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                "SELECT f.file_key, l.row_no, l.billing_period, l.usage_start_ns, l.usage_end_ns, l.payer_account_id,
                 l.usage_account_id, l.line_item_type, l.product_code, l.usage_type, l.operation, l.resource_id,
                 l.instance_type, l.region, l.availability_zone, l.pricing_term, l.sku_id, l.commitment_id,
                 l.currency, l.usage_amount_nano, l.unblended_nano, l.public_on_demand_nano, l.sp_effective_nano,
                 l.ri_effective_nano, l.net_unblended_nano, l.contracted_nano, l.effective_nano
                 FROM bill_lines l JOIN bill_files f ON f.file_id = l.file_id
                 WHERE f.export_name = $1 AND f.billing_period = $2 ORDER BY f.file_key, l.row_no",
                sql_params![export, billing_period],
                |r| {
                    Ok((
                        r.get(0)?,
                        BillLine {
                            row: r.get::<i64>(1)? as u64,
                            billing_period: r.get(2)?,
                            usage_start_ns: r.get::<i64>(3)? as u64,
                            usage_end_ns: r.get::<i64>(4)? as u64,
                            payer_account_id: r.get(5)?,
                            usage_account_id: r.get(6)?,
                            line_item_type: r.get(7)?,
                            product_code: r.get(8)?,
                            usage_type: r.get(9)?,
                            operation: r.get(10)?,
                            resource_id: r.get(11)?,
                            instance_type: r.get(12)?,
                            region: r.get(13)?,
                            availability_zone: r.get(14)?,
                            pricing_term: r.get(15)?,
                            sku_id: r.get(16)?,
                            commitment_id: r.get(17)?,
                            currency: r.get(18)?,
                            usage_amount_nano: r.get(19)?,
                            unblended_nano: r.get(20)?,
                            public_on_demand_nano: r.get(21)?,
                            sp_effective_nano: r.get(22)?,
                            ri_effective_nano: r.get(23)?,
                            net_unblended_nano: r.get(24)?,
                            contracted_nano: r.get(25)?,
                            effective_nano: r.get(26)?,
                        },
                    ))
                },
            )?)
        })
    }
}

fn insert_line(db: &impl Db, file_id: i64, l: &BillLine) -> Result<(), LedgerError> {
    db.run(
        "INSERT INTO bill_lines (file_id, row_no, billing_period, usage_start_ns, usage_end_ns, payer_account_id,
         usage_account_id, line_item_type, product_code, usage_type, operation, resource_id, instance_type, region,
         availability_zone, pricing_term, sku_id, commitment_id, currency, usage_amount_nano, unblended_nano,
         public_on_demand_nano, sp_effective_nano, ri_effective_nano, net_unblended_nano, contracted_nano,
         effective_nano) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
         $19, $20, $21, $22, $23, $24, $25, $26, $27)",
        sql_params![
            file_id,
            l.row as i64,
            l.billing_period,
            l.usage_start_ns as i64,
            l.usage_end_ns as i64,
            l.payer_account_id,
            l.usage_account_id,
            l.line_item_type,
            l.product_code,
            l.usage_type,
            l.operation,
            l.resource_id,
            l.instance_type,
            l.region,
            l.availability_zone,
            l.pricing_term,
            l.sku_id,
            l.commitment_id,
            l.currency,
            l.usage_amount_nano,
            l.unblended_nano,
            l.public_on_demand_nano,
            l.sp_effective_nano,
            l.ri_effective_nano,
            l.net_unblended_nano,
            l.contracted_nano,
            l.effective_nano
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::bill::{BillDelivery, BillFileLines, BillImport, BillLine, BillStore};
    use crate::store::SqliteLedger;

    const HOUR: u64 = 3_600_000_000_000;

    fn line(row: u64, resource: &str, cost: i64) -> BillLine {
        BillLine {
            row,
            billing_period: "2026-11".into(),
            usage_start_ns: 1_793_491_200_000_000_000,
            usage_end_ns: 1_793_491_200_000_000_000 + HOUR,
            resource_id: resource.into(),
            line_item_type: "Usage".into(),
            unblended_nano: Some(cost),
            usage_amount_nano: Some(1_000_000_000),
            ..BillLine::default()
        }
    }

    fn delivery(execution: &str, files: Vec<(&str, &str, Vec<BillLine>)>) -> BillDelivery {
        BillDelivery {
            export: "cur".into(),
            billing_period: "2026-11".into(),
            execution_id: execution.into(),
            manifest_key: "cur/metadata/BILLING_PERIOD=2026-11/cur-Manifest.json".into(),
            schema: "cur2".into(),
            files: files
                .into_iter()
                .map(|(k, e, lines)| BillFileLines { key: k.into(), etag: e.into(), lines })
                .collect(),
        }
    }

    #[test]
    fn a_restated_period_replaces_the_old_lines_and_the_same_delivery_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.db"), HOUR, u64::MAX).unwrap();
        let first = delivery("e1", vec![("a", "x", vec![line(1, "i-1", 5), line(2, "i-2", 7)]), ("b", "y", vec![])]);
        assert_eq!(l.put_bill_delivery(&first, 1).unwrap(), BillImport::Imported { lines: 2 });
        assert!(
            l.bill_delivery_stored("cur", "2026-11", "e1", &[("b".into(), "y".into()), ("a".into(), "x".into())])
                .unwrap()
        );
        assert_eq!(l.put_bill_delivery(&first, 2).unwrap(), BillImport::Unchanged);
        assert_eq!(l.bill_files().unwrap().iter().map(|f| f.imported_ns).collect::<Vec<_>>(), [1, 1]);
        let restated = delivery("e2", vec![("c", "z", vec![line(1, "i-1", 6)])]);
        assert_eq!(l.put_bill_delivery(&restated, 3).unwrap(), BillImport::Replaced { lines: 1, old_lines: 2 });
        assert_eq!(l.bill_lines("cur", "2026-11").unwrap(), [("c".to_string(), line(1, "i-1", 6))]);
        assert_eq!(l.bill_files().unwrap().len(), 1);
    }
}

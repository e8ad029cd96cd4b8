//! `gpucost-collector bill import` (issue 25 item 1): AWS Data Exports deliveries as AWS lays them out —
//! CUR 2.0 as snappy Parquet (written by pyarrow) and gzip CSV, and FOCUS 1.2 as gzip CSV, with their manifests
//! (tests/bill/make_export.py) — from a local folder into SQLite and from moto's S3 into PostgreSQL: the stored
//! lines exactly, a second import changes nothing, a restated month replaces the old lines, and a CSV with a bad
//! value or a truncated Parquet file is refused whole, naming file, row and column, with nothing of it kept.

use std::path::{Path, PathBuf};
use std::process::Command;

use gpucost_e2e::postgres::Postgres;
use gpucost_e2e::{Moto, bin};
use gpucost_ledger::bill::{BillLine, BillStore};
use gpucost_ledger::{SqlLedger, SqliteLedger};

const HOUR: u64 = 3_600_000_000_000;
/// 2026-11-01T00:00:00Z
const NOV: u64 = 1_793_491_200_000_000_000;

fn python() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let p = Path::new(&home).join(".cache/gpucost/focus-venv/bin/python");
    if p.exists() {
        return Some(p);
    }
    assert!(std::env::var("CI").is_err(), "pyarrow's venv {} is missing (scripts/test installs it)", p.display());
    None
}

fn make(python: &Path, out: &Path, variant: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bill/make_export.py");
    let o = Command::new(python).arg(script).arg(out).arg(variant).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs `bill import` with `args`: (success, stdout, stderr).
fn import(db: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let o = Command::new(bin("gpucost-collector"))
        .args(["bill", "import", "--db", db])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn cur_line(row: u64, hour: u64, kind: &str, resource: &str, itype: &str, term: &str) -> BillLine {
    BillLine {
        row,
        billing_period: "2026-11".into(),
        usage_start_ns: NOV + hour * HOUR,
        usage_end_ns: NOV + (hour + 1) * HOUR,
        payer_account_id: "111122223333".into(),
        usage_account_id: "444455556666".into(),
        line_item_type: kind.into(),
        product_code: "AmazonEC2".into(),
        usage_type: format!("{}:{itype}", if term.is_empty() { "SpotUsage" } else { "BoxUsage" }),
        operation: "RunInstances".into(),
        resource_id: resource.into(),
        instance_type: itype.into(),
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
        pricing_term: if term.is_empty() { "Spot".into() } else { term.into() },
        sku_id: "SKU1".into(),
        currency: "USD".into(),
        usage_amount_nano: Some(1_000_000_000),
        ..BillLine::default()
    }
}

/// What the first delivery must store: CUR 2.0's two Parquet lines and its CSV line, to the nano-dollar.
fn first_lines() -> Vec<(String, BillLine)> {
    let pq = "bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00001.snappy.parquet".to_string();
    let csv = "bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00002.csv.gz".to_string();
    let sp = "arn:aws:savingsplans::111122223333:savingsplan/sp-1";
    vec![
        (
            pq.clone(),
            BillLine {
                unblended_nano: Some(32_772_600_000),
                public_on_demand_nano: Some(32_772_600_000),
                ..cur_line(1, 0, "Usage", "i-0aaa", "p4d.24xlarge", "OnDemand")
            },
        ),
        (
            pq,
            BillLine {
                unblended_nano: Some(32_772_600_000),
                public_on_demand_nano: Some(32_772_600_000),
                sp_effective_nano: Some(21_302_190_000),
                commitment_id: sp.into(),
                ..cur_line(2, 1, "SavingsPlanCoveredUsage", "i-0aaa", "p4d.24xlarge", "OnDemand")
            },
        ),
        (
            csv,
            BillLine {
                unblended_nano: Some(412_345_679),
                public_on_demand_nano: Some(1_006_000_000),
                ..cur_line(1, 0, "Usage", "i-0bbb", "g5.xlarge", "")
            },
        ),
    ]
}

fn focus_lines() -> Vec<(String, BillLine)> {
    vec![(
        "bills/gpu-focus/data/BILLING_PERIOD=2026-11/gpu-focus-00001.csv.gz".into(),
        BillLine {
            row: 1,
            billing_period: "2026-11".into(),
            usage_start_ns: NOV + 5 * HOUR,
            usage_end_ns: NOV + 6 * HOUR,
            payer_account_id: "111122223333".into(),
            usage_account_id: "444455556666".into(),
            line_item_type: "SavingsPlanCoveredUsage".into(),
            product_code: "AmazonEC2".into(),
            usage_type: "BoxUsage:p5.48xlarge".into(),
            operation: "RunInstances".into(),
            resource_id: "i-0ddd".into(),
            instance_type: "p5.48xlarge".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1b".into(),
            pricing_term: "SavingsPlan".into(),
            sku_id: "SKU5".into(),
            commitment_id: "arn:aws:savingsplans::111122223333:savingsplan/sp-1".into(),
            currency: "USD".into(),
            usage_amount_nano: Some(1_000_000_000),
            unblended_nano: Some(0),
            public_on_demand_nano: Some(55_040_000_000),
            contracted_nano: Some(55_040_000_000),
            effective_nano: Some(38_500_000_000),
            ..BillLine::default()
        },
    )]
}

/// The whole story against one ledger: `run(variant)` writes that delivery where the import reads it and
/// imports it.
fn story(ledger: &dyn BillStore, run: &mut dyn FnMut(&str) -> (bool, String, String)) {
    let (ok, out, err) = run("first");
    assert!(ok, "{out}{err}");
    assert!(out.contains("gpu-cur 2026-11: imported 3 lines from 2 files"), "{out}");
    assert!(out.contains("gpu-focus 2026-11: imported 1 lines from 1 files"), "{out}");
    assert_eq!(ledger.bill_lines("gpu-cur", "2026-11").unwrap(), first_lines());
    assert_eq!(ledger.bill_lines("gpu-focus", "2026-11").unwrap(), focus_lines());
    let files = ledger.bill_files().unwrap();

    let (ok, out, err) = run("again");
    assert!(ok, "{out}{err}");
    assert!(out.contains("gpu-cur 2026-11: unchanged") && out.contains("gpu-focus 2026-11: unchanged"), "{out}");
    assert_eq!(ledger.bill_files().unwrap(), files, "a second import changes nothing, not even the import times");

    let (ok, out, err) = run("restated");
    assert!(ok, "{out}{err}");
    assert!(out.contains("gpu-cur 2026-11: replaced 3 lines with 1 from 1 files (restated)"), "{out}");
    let restated = ledger.bill_lines("gpu-cur", "2026-11").unwrap();
    assert_eq!(restated.len(), 1);
    assert_eq!(restated[0].1.unblended_nano, Some(30_000_000_000));
    assert_eq!(restated[0].1.resource_id, "i-0aaa");

    let (ok, out, err) = run("bad-csv");
    assert!(!ok, "{out}");
    assert!(
        err.contains("bill file bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00001.csv.gz, row 2, column line_item_unblended_cost: not a decimal number: \"one dollar\""),
        "{err}"
    );
    assert_eq!(ledger.bill_lines("gpu-cur", "2026-11").unwrap(), restated, "nothing of the bad file is kept");

    let (ok, out, err) = run("truncated-parquet");
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            "bill file bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00001.snappy.parquet: not a whole Parquet file"
        ),
        "{err}"
    );
    assert_eq!(ledger.bill_lines("gpu-cur", "2026-11").unwrap(), restated, "nothing of the cut file is kept");
    assert_eq!(ledger.bill_lines("gpu-focus", "2026-11").unwrap(), focus_lines());
}

#[test]
fn a_folder_of_exports_is_imported_into_sqlite_once_restated_whole_and_bad_files_refused_whole() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let db = dir.path().join("ledger.db");
    let ledger = SqliteLedger::open(&db, HOUR, u64::MAX).unwrap();
    let db = db.to_str().unwrap().to_string();
    let folder = exports.to_str().unwrap().to_string();
    story(&ledger, &mut |variant| {
        match variant {
            "again" => {}
            "first" => {
                make(&python, &exports, "first");
                make(&python, &exports, "focus");
            }
            v => make(&python, &exports, v),
        }
        import(&db, &["--dir", &folder], &[])
    });
}

#[test]
fn an_s3_bucket_of_exports_is_imported_into_postgresql_once_restated_whole_and_bad_files_refused_whole() {
    let Some(python) = python() else { return };
    let Some(moto) = Moto::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    let ledger = SqlLedger::open_postgres(&pg.url(), HOUR, u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let out = dir.path().join("out");
    moto.boto3_with_out(&out, "boto3.client('s3', **kw).create_bucket(Bucket='bills-bucket')");
    let url = moto.url();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let db = pg.url();
    story(&ledger, &mut |variant| {
        match variant {
            "again" => {}
            "first" => {
                make(&python, &exports, "first");
                make(&python, &exports, "focus");
            }
            v => make(&python, &exports, v),
        }
        // The bucket mirrors the folder: each delivery's files replace the export's earlier ones.
        moto.boto3_with_out(
            &out,
            &format!(
                "import os\ns3 = boto3.client('s3', **kw)\nroot = {:?}\n\
                 for o in s3.list_objects_v2(Bucket='bills-bucket').get('Contents', []):\n    s3.delete_object(Bucket='bills-bucket', Key=o['Key'])\n\
                 for d, _, fs in os.walk(root):\n    for f in fs:\n        p = os.path.join(d, f)\n        s3.upload_file(p, 'bills-bucket', os.path.relpath(p, root))\n",
                exports.display().to_string()
            ),
        );
        import(&db, &["--s3", "s3://bills-bucket/bills", "--s3-endpoint-url", &url], &env)
    });
}

#[test]
fn a_serving_collector_imports_the_bill_from_its_folder_in_a_leader_job_and_counts_its_runs() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    make(&python, &exports, "first");
    let db = dir.path().join("ledger.db");
    let c = gpucost_e2e::Collector::start_with(
        &db,
        gpucost_e2e::free_port(),
        gpucost_e2e::free_port(),
        &["--bill-dir", exports.to_str().unwrap(), "--bill-import-interval", "1s"],
        &[],
    );
    let runs = || {
        let (_, text) = c.get_text("/metrics");
        text.lines()
            .find(|l| l.starts_with("gpucost_job_runs_total{job=\"bill-import\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut tries = 0;
    while runs() < 2.0 {
        tries += 1;
        assert!(tries < 600, "the bill-import job did not run twice");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ledger = SqliteLedger::open(&db, HOUR, u64::MAX).unwrap();
    assert_eq!(ledger.bill_lines("gpu-cur", "2026-11").unwrap(), first_lines());
    let (_, text) = c.get_text("/metrics");
    assert!(
        !text.lines().any(|l| l.starts_with("gpucost_job_failures_total{job=\"bill-import\"}") && !l.ends_with(" 0")),
        "no failed run: {text}"
    );
}

//! A Data Exports delivery's `Manifest.json`: which export and billing period it is, the execution that
//! wrote it, and its data files. AWS writes it at `<prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/
//! <export>-Manifest.json` after every data file of that execution is in place, and rewrites it at every
//! refresh, restatements included (docs.aws.amazon.com/cur/latest/userguide/dataexports-export-delivery.html,
//! dataexports-manifest.html).

use serde::Deserialize;

/// The suffix of a manifest's key.
pub const SUFFIX: &str = "-Manifest.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its key (S3 key, or its path under the folder).
    pub key: String,
    pub export: String,
    /// `YYYY-MM`.
    pub billing_period: String,
    pub execution_id: String,
    /// The manifest's column names (the export's schema).
    pub columns: Vec<String>,
    /// The data files, as the manifest gives them (`s3://bucket/key`).
    pub data_files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    execution_id: String,
    #[serde(default)]
    columns: Vec<Column>,
    data_files: Vec<String>,
    #[serde(default)]
    billing_period: Option<Period>,
}

#[derive(Deserialize)]
struct Column {
    name: String,
}

#[derive(Deserialize)]
struct Period {
    start: String,
}

/// Whether `key` is where Data Exports puts a manifest.
pub fn is_manifest_key(key: &str) -> bool {
    key.ends_with(SUFFIX) && key.split('/').any(|s| s == "metadata")
}

/// The manifest at `key`; errors name the key.
pub fn parse(key: &str, json: &[u8]) -> Result<Manifest, String> {
    let raw: Raw =
        serde_json::from_slice(json).map_err(|e| format!("manifest {key}: not a Data Exports manifest: {e}"))?;
    let file = key.rsplit('/').next().unwrap_or(key);
    let export = file
        .strip_suffix(SUFFIX)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| format!("manifest {key}: its name is not <export>{SUFFIX}"))?
        .to_string();
    let from_key = key.split('/').find_map(|p| p.strip_prefix("BILLING_PERIOD=")).map(str::to_string);
    let billing_period = match (from_key, raw.billing_period) {
        (Some(p), _) => p,
        (None, Some(p)) => p.start.get(..7).unwrap_or_default().to_string(),
        (None, None) => return Err(format!("manifest {key}: no BILLING_PERIOD= in its key and no billingPeriod")),
    };
    let valid = billing_period.len() == 7
        && billing_period.as_bytes()[4] == b'-'
        && billing_period.bytes().enumerate().all(|(i, b)| i == 4 || b.is_ascii_digit());
    if !valid {
        return Err(format!("manifest {key}: billing period {billing_period:?} is not YYYY-MM"));
    }
    Ok(Manifest {
        key: key.to_string(),
        export,
        billing_period,
        execution_id: raw.execution_id,
        columns: raw.columns.into_iter().map(|c| c.name).collect(),
        data_files: raw.data_files,
    })
}

/// The bucket and key of an `s3://bucket/key` URI.
pub fn s3_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/').filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

/// The part of a data file's key under its export's folder (`data/BILLING_PERIOD=…/…`): where it lies in a
/// local copy of the export's folder.
pub fn key_under_export<'a>(key: &'a str, export: &str) -> Option<&'a str> {
    let marker = format!("{export}/data/");
    key.rfind(&marker).map(|i| &key[i + export.len() + 1..])
}

/// The folder of the export a manifest key is in (`bills/gpu-cur/`, or empty when the key starts at it).
pub fn export_folder(manifest_key: &str) -> &str {
    if manifest_key.starts_with("metadata/") {
        return "";
    }
    manifest_key.rfind("/metadata/").map_or("", |i| &manifest_key[..i + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "bills/gpu-cur/metadata/BILLING_PERIOD=2026-11/gpu-cur-Manifest.json";

    #[test]
    fn a_manifest_names_its_export_period_execution_and_files() {
        let json = br#"{"executionId":"4f5c-01","exportArn":"arn:aws:bcm-data-exports:us-east-1:111122223333:export/gpu-cur-abc",
            "billingPeriod":{"start":"2026-11-01T00:00:00.000Z","end":"2026-12-01T00:00:00.000Z"},
            "columns":[{"name":"bill_bill_type","type":"string"},{"name":"line_item_line_item_type","type":"string"}],
            "dataFiles":["s3://b/bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00001.snappy.parquet"],
            "additionalOutputFiles":[]}"#;
        let m = parse(KEY, json).unwrap();
        assert_eq!(
            (m.export.as_str(), m.billing_period.as_str(), m.execution_id.as_str()),
            ("gpu-cur", "2026-11", "4f5c-01")
        );
        assert_eq!(m.columns, ["bill_bill_type", "line_item_line_item_type"]);
        let (bucket, key) = s3_uri(&m.data_files[0]).unwrap();
        assert_eq!(bucket, "b");
        assert_eq!(key_under_export(key, &m.export), Some("data/BILLING_PERIOD=2026-11/gpu-cur-00001.snappy.parquet"));
        assert_eq!(export_folder(KEY), "bills/gpu-cur/");
        assert_eq!(export_folder("metadata/BILLING_PERIOD=2026-11/gpu-cur-Manifest.json"), "");
        assert!(is_manifest_key(KEY));
        assert!(!is_manifest_key("bills/gpu-cur/data/BILLING_PERIOD=2026-11/gpu-cur-00001.csv.gz"));
    }

    #[test]
    fn a_manifest_that_is_not_one_is_refused_by_key() {
        let e = parse(KEY, b"{\"executionId\":\"x\"}").unwrap_err();
        assert!(e.contains(KEY) && e.contains("dataFiles"), "{e}");
        let e = parse("x/metadata/BILLING_PERIOD=26-11/x-Manifest.json", b"{\"executionId\":\"x\",\"dataFiles\":[]}")
            .unwrap_err();
        assert!(e.contains("not YYYY-MM"), "{e}");
    }
}

//! The AWS bill (issue 25): AWS Data Exports deliveries — CUR 2.0 or FOCUS 1.2, Parquet or gzip CSV, with
//! their manifests — read from a local folder or an S3 bucket and stored in the ledger, one billing period of
//! an export at a time, replaced whole when AWS restates it. `manifest` finds a delivery's files, `read` reads
//! a file's rows (errors name file, row and column), `cur` and `focus` map a row to the ledger's bill line
//! (`amount` for its numbers and times, `ec2` for instance types and ids), `source` lists and fetches, and
//! `import` ties them together. See docs/bill.md.

pub mod amount;
pub mod cur;
pub mod ec2;
pub mod focus;
pub mod import;
pub mod manifest;
pub mod read;
pub mod source;

//! A chargeback request and the report it renders: what the HTTP API (`GET /api/v1/chargeback`) and the CLI
//! (`gpucost-collector report chargeback`) both call. Every error names the parameter.

use gpucost_ledger::LedgerError;
use gpucost_ledger::prelude::*;
use gpucost_types::period::{Cadence, Period, parse_instant, utc};
use gpucost_types::policy::Policy;

use crate::Coverage;
use crate::chargeback::{self, GroupBy};
use crate::focus;

/// How reports name cost centres and the parties of the FOCUS export.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// The Backstage group annotation that holds a team's cost centre.
    pub cost_center_annotation: String,
    pub parties: focus::Parties,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self { cost_center_annotation: "gpucost.io/cost-center".into(), parties: focus::Parties::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Focus,
}

/// The parameters of a chargeback request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargebackRequest {
    pub period: Period,
    pub group_by: GroupBy,
    pub format: Format,
    pub policy: Policy,
}

/// Which period a request covers, as given: a calendar period (`2026-11`, `2026-W48`), or a window `from`..`to`
/// (RFC 3339 or Unix seconds), or neither (this month).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window<'a> {
    pub period: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

impl ChargebackRequest {
    /// The request made at `now_ns` by a window and the names of a grouping (default team), a format (default
    /// json) and a policy (default hybrid); every error names the parameter.
    pub fn new(
        window: Window<'_>,
        group_by: Option<&str>,
        format: Option<&str>,
        policy: Option<&str>,
        now_ns: u64,
    ) -> Result<Self, String> {
        let period = match (window.period, window.from, window.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err("give period, or from and to, not both".into()),
            (Some(p), None, None) => Period::parse(p)?,
            (None, Some(f), Some(t)) => {
                let (from_ns, to_ns) = (parse_instant("from", f)?, parse_instant("to", t)?);
                if from_ns >= to_ns {
                    return Err(format!("from ({}) must be before to ({})", utc(from_ns), utc(to_ns)));
                }
                if to_ns - from_ns > 400 * 86_400 * 1_000_000_000 {
                    return Err("the window from..to is longer than 400 days".into());
                }
                Period { label: format!("{}/{}", utc(from_ns), utc(to_ns)), from_ns, to_ns }
            }
            (None, Some(_), None) | (None, None, Some(_)) => return Err("from and to go together".into()),
            (None, None, None) => Period::containing(Cadence::Monthly, now_ns),
        };
        let group_by = GroupBy::parse(group_by.unwrap_or("team"))?;
        let format = match format.unwrap_or("json") {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "focus" => Format::Focus,
            other => return Err(format!("format: unknown format {other:?}; expected json, csv or focus")),
        };
        let policy = match policy {
            None => Policy::Hybrid,
            Some(p) => Policy::parse(p)
                .ok_or_else(|| format!("policy: unknown policy {p:?}; expected allocation, utilization or hybrid"))?,
        };
        Ok(ChargebackRequest { period, group_by, format, policy })
    }
}

/// A report as written: its body, content type, and how much of the period the ledger holds data for.
pub struct Rendered {
    pub body: String,
    pub content_type: &'static str,
    pub coverage: Coverage,
    /// What a reader must be told when data is missing for part or all of the period.
    pub warning: Option<String>,
}

/// Writes the report `req` asks for.
pub fn render(
    ledger: &dyn Ledger,
    req: &ChargebackRequest,
    config: &ReportConfig,
    cost_center: &dyn Fn(&str) -> Option<String>,
) -> Result<Rendered, LedgerError> {
    let (body, content_type, coverage) = match req.format {
        Format::Focus => {
            let sources = crate::sources(ledger, &req.period)?;
            let coverage = Coverage::read(ledger, &sources, &req.period)?;
            (focus::export(ledger, &req.period, req.policy, &config.parties)?, "text/csv; charset=utf-8", coverage)
        }
        Format::Csv | Format::Json => {
            let c = chargeback::build(ledger, req.period.clone(), req.group_by, req.policy, cost_center)?;
            if req.format == Format::Csv {
                (c.to_csv(), "text/csv; charset=utf-8", c.coverage)
            } else {
                // Through a `Value`: its keys in alphabetical order, as this JSON has always had them.
                let json = serde_json::to_value(c.body()).expect("a chargeback serialises").to_string();
                (json, "application/json", c.coverage)
            }
        }
    };
    let warning = coverage.warning(&req.period);
    Ok(Rendered { body, content_type, coverage, warning })
}

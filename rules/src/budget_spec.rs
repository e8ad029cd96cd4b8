//! A budget: its scope, cadence, amount and thresholds, as the API (JSON) and the config file (TOML)
//! give it. Parsing checks every field and names the one that is wrong.

use serde_json::Value;

use gpucost_types::dimension::{Dimension, MAX_FILTER_TERMS, MAX_LABEL_DIMENSIONS};
use gpucost_types::money::usd;
use gpucost_types::period::Cadence;
use gpucost_types::policy::Policy;

/// What a threshold compares with the budget's amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    /// Spend so far in the period.
    Actual,
    /// Spend so far plus the forecast for the rest of the period.
    Forecast,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Self::Actual => "actual",
            Self::Forecast => "forecast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold {
    pub basis: Basis,
    /// Percent of the budget's amount (1..=1000).
    pub percent: u32,
}

impl Threshold {
    /// `actual-80`, `forecast-100`: the threshold's stable id in alert states and alert labels.
    pub fn id(&self) -> String {
        format!("{}-{}", self.basis.name(), self.percent)
    }

    /// 50/80/100 % of actual spend and 100 % of the forecast.
    pub fn defaults() -> Vec<Threshold> {
        vec![
            Threshold { basis: Basis::Actual, percent: 50 },
            Threshold { basis: Basis::Actual, percent: 80 },
            Threshold { basis: Basis::Actual, percent: 100 },
            Threshold { basis: Basis::Forecast, percent: 100 },
        ]
    }
}

/// Scope dimensions a budget may name directly (`filter` takes any `<dimension>=<value>` list).
pub const SCOPES: [&str; 7] = ["team", "department", "owner", "model", "namespace", "cluster", "filter"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// `[A-Za-z0-9._-]`, 1 to 64 characters.
    pub name: String,
    /// The cost lines the budget covers: every (dimension, value) must match.
    pub scope: Vec<(Dimension, String)>,
    pub cadence: Cadence,
    pub amount_micros: u128,
    pub thresholds: Vec<Threshold>,
    pub policy: Policy,
}

/// Checks a budget name (it is a URL path segment and an alert label; `status` is the status endpoint).
pub fn check_name(name: &str) -> Result<(), String> {
    if name == "status" {
        return Err("budget name \"status\" is reserved (GET /api/v1/budgets/status)".into());
    }
    // A URL's dot segments: /api/v1/budgets/.. is /api/v1, so such a budget could never be read or deleted.
    if name == "." || name == ".." {
        return Err(format!(
            "budget name {name:?} is a path's dot segment, which no URL can name; use a letter or digit too"
        ));
    }
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!("budget name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

/// Dollars (a JSON number or a decimal string, at most six decimals) → micro-dollars.
pub(crate) fn parse_usd(field: &str, v: &Value) -> Result<u128, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(format!("{field}: expected an amount in USD (a number or a decimal string)")),
    };
    let bad = || format!("{field}: {text:?} is not an amount in USD (e.g. 5000 or \"1250.50\")");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 6 {
        return Err(format!("{field}: {text:?} has more than six decimals (micro-dollars)"));
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let frac: u128 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    let micros = whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    if micros == 0 {
        return Err(format!("{field}: must be more than zero"));
    }
    if micros > 1_000_000_000_000_000_000 {
        return Err(format!("{field}: more than a trillion dollars"));
    }
    Ok(micros)
}

fn parse_scope(v: &Value) -> Result<Vec<(Dimension, String)>, String> {
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        format!("scope: expected an object with one of {} (e.g. {{\"team\": \"vision\"}})", SCOPES.join(", "))
    })?;
    let (key, value) = obj.iter().next().expect("one entry");
    let value = value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("scope.{key}: expected a non-empty string"))?;
    if key == "filter" {
        let mut out = Vec::new();
        for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (d, val) = part.split_once('=').ok_or_else(|| {
                format!("scope.filter: {part:?} is not <dimension>=<value> (e.g. namespace=team-nlp)")
            })?;
            let dim = Dimension::parse(d.trim())
                .filter(|d| *d != Dimension::Day)
                .ok_or_else(|| format!("scope.filter: unknown dimension {:?}", d.trim()))?;
            out.push((dim, val.trim().to_string()));
        }
        let labels = out.iter().filter(|(d, _)| d.reads_labels()).count();
        if out.len() > MAX_FILTER_TERMS || labels > MAX_LABEL_DIMENSIONS {
            return Err(format!(
                "scope.filter: {} terms, {labels} of them labels; at most {MAX_FILTER_TERMS} terms and {MAX_LABEL_DIMENSIONS} labels",
                out.len()
            ));
        }
        return Ok(out);
    }
    if !SCOPES.contains(&key.as_str()) {
        return Err(format!("scope: unknown scope {key:?}; expected one of {}", SCOPES.join(", ")));
    }
    Ok(vec![(Dimension::parse(key).expect("a known dimension"), value.to_string())])
}

fn parse_thresholds(v: Option<&Value>) -> Result<Vec<Threshold>, String> {
    let Some(v) = v else { return Ok(Threshold::defaults()) };
    let list =
        v.as_array().ok_or("thresholds: expected a list of {\"type\": \"actual\"|\"forecast\", \"percent\": N}")?;
    if list.is_empty() {
        return Err("thresholds: give at least one, or leave it out for 50/80/100 % actual and 100 % forecast".into());
    }
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let basis = match t["type"].as_str() {
            Some("actual") => Basis::Actual,
            Some("forecast") => Basis::Forecast,
            other => return Err(format!("thresholds[{i}].type: expected \"actual\" or \"forecast\", got {other:?}")),
        };
        let percent = t["percent"]
            .as_u64()
            .filter(|p| (1..=1000).contains(p))
            .ok_or_else(|| format!("thresholds[{i}].percent: expected a whole number from 1 to 1000"))?;
        let th = Threshold { basis, percent: percent as u32 };
        if out.contains(&th) {
            return Err(format!("thresholds[{i}]: {} is given twice", th.id()));
        }
        out.push(th);
    }
    out.sort();
    Ok(out)
}

impl Budget {
    /// Parses a budget from its JSON form; every error names the field.
    pub fn from_json(name: &str, v: &Value) -> Result<Budget, String> {
        check_name(name)?;
        let obj = v.as_object().ok_or("expected a JSON object with scope, period, amount_usd and thresholds")?;
        const FIELDS: [&str; 6] = ["name", "scope", "period", "amount_usd", "thresholds", "policy"];
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("unknown field {k:?}; expected {}", FIELDS.join(", ")));
        }
        if let Some(n) = obj.get("name").and_then(Value::as_str)
            && n != name
        {
            return Err(format!("name: {n:?} differs from the budget's name {name:?}"));
        }
        let scope = parse_scope(obj.get("scope").ok_or("scope: missing")?)?;
        let cadence = match obj.get("period").map(|p| p.as_str()) {
            None | Some(Some("monthly")) => Cadence::Monthly,
            Some(Some("weekly")) => Cadence::Weekly,
            Some(other) => return Err(format!("period: expected \"monthly\" or \"weekly\", got {other:?}")),
        };
        let amount_micros = parse_usd("amount_usd", obj.get("amount_usd").ok_or("amount_usd: missing")?)?;
        let thresholds = parse_thresholds(obj.get("thresholds"))?;
        let policy = match obj.get("policy") {
            None => Policy::Hybrid,
            Some(p) => p
                .as_str()
                .and_then(Policy::parse)
                .ok_or_else(|| format!("policy: expected allocation, utilization or hybrid, got {p}"))?,
        };
        Ok(Budget { name: name.to_string(), scope, cadence, amount_micros, thresholds, policy })
    }

    /// The budget's JSON form (what `from_json` reads back).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.spec()).expect("a budget serialises")
    }

    /// The budget as the API shows it (its JSON form, typed).
    pub fn spec(&self) -> BudgetSpec {
        BudgetSpec {
            name: self.name.clone(),
            scope: self.scope_spec(),
            period: match self.cadence {
                Cadence::Monthly => "monthly",
                Cadence::Weekly => "weekly",
            }
            .to_string(),
            amount_usd: usd(self.amount_micros),
            thresholds: self
                .thresholds
                .iter()
                .map(|t| ThresholdSpec { kind: t.basis.name().to_string(), percent: t.percent })
                .collect(),
            policy: self.policy.name().to_string(),
        }
    }

    /// The scope as one of [`SCOPES`]: a dimension, or a `filter` of several.
    pub fn scope_spec(&self) -> ScopeSpec {
        let mut scope = ScopeSpec::default();
        match self.scope.as_slice() {
            [(Dimension::Team, v)] => scope.team = Some(v.clone()),
            [(Dimension::Department, v)] => scope.department = Some(v.clone()),
            [(Dimension::Owner, v)] => scope.owner = Some(v.clone()),
            [(Dimension::Model, v)] => scope.model = Some(v.clone()),
            [(Dimension::Namespace, v)] => scope.namespace = Some(v.clone()),
            [(Dimension::Cluster, v)] => scope.cluster = Some(v.clone()),
            list => {
                scope.filter = Some(list.iter().map(|(d, v)| format!("{}={v}", d.name())).collect::<Vec<_>>().join(","))
            }
        }
        scope
    }
}

/// A budget's JSON form: as the API shows it and stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct BudgetSpec {
    pub name: String,
    pub scope: ScopeSpec,
    /// `monthly` or `weekly`.
    pub period: String,
    /// USD with six decimals, e.g. `"25000.000000"`.
    pub amount_usd: String,
    pub thresholds: Vec<ThresholdSpec>,
    /// `allocation`, `utilization` or `hybrid`.
    pub policy: String,
}

/// The cost lines a budget covers: exactly one of these is set.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ScopeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `<dimension>=<value>,…`: every term must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ThresholdSpec {
    /// `actual` or `forecast`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Percent of the amount, 1 to 1000.
    pub percent: u32,
}

/// The budgets of a config file (TOML: `[[budget]]` tables with `name` and the JSON form's fields; its alert
/// rules are `alert_spec`'s).
pub fn from_toml(source: &str, text: &str) -> Result<Vec<Budget>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    // `[[idle_gpu]]` and `[[anomaly]]` alert rules share the file (`alert_spec::from_toml` reads them).
    if let Some(k) = doc.keys().find(|k| !["budget", "idle_gpu", "anomaly"].contains(&k.as_str())) {
        return Err(format!(
            "{source}: unknown table {k:?}; budgets go in [[budget]] tables, alert rules in [[idle_gpu]] and [[anomaly]]"
        ));
    }
    let mut out: Vec<Budget> = Vec::new();
    for (i, b) in doc.get("budget").and_then(toml::Value::as_array).into_iter().flatten().enumerate() {
        let v = serde_json::to_value(b).map_err(|e| format!("{source}: budget {}: {e}", i + 1))?;
        let name = v["name"].as_str().ok_or_else(|| format!("{source}: budget {}: name: missing", i + 1))?;
        let budget = Budget::from_json(name, &v).map_err(|e| format!("{source}: budget {name:?}: {e}"))?;
        if out.iter().any(|b| b.name == budget.name) {
            return Err(format!("{source}: budget {name:?} is defined twice"));
        }
        out.push(budget);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_budget_round_trips_and_defaults_to_monthly_hybrid_with_the_standard_thresholds() {
        let b =
            Budget::from_json("vision-gpu", &json!({ "scope": { "team": "vision" }, "amount_usd": "1250.5" })).unwrap();
        assert_eq!(b.scope, vec![(Dimension::Team, "vision".to_string())]);
        assert_eq!((b.cadence, b.amount_micros, b.policy), (Cadence::Monthly, 1_250_500_000, Policy::Hybrid));
        let ids: Vec<String> = b.thresholds.iter().map(Threshold::id).collect();
        assert_eq!(ids, ["actual-50", "actual-80", "actual-100", "forecast-100"]);
        assert_eq!(Budget::from_json("vision-gpu", &b.to_json()).unwrap(), b);
        let f = Budget::from_json(
            "nlp-prod",
            &json!({ "scope": { "filter": "namespace=team-nlp, cluster=prod" }, "period": "weekly", "amount_usd": 700 }),
        )
        .unwrap();
        assert_eq!(f.scope.len(), 2);
        assert_eq!(Budget::from_json("nlp-prod", &f.to_json()).unwrap(), f);
    }

    #[test]
    fn every_bad_field_is_named() {
        let ok = json!({ "scope": { "team": "vision" }, "amount_usd": 10 });
        let with = |k: &str, v: Value| {
            let mut o = ok.clone();
            o[k] = v;
            Budget::from_json("b", &o).unwrap_err()
        };
        assert!(with("amount_usd", json!("ten")).contains("amount_usd: \"ten\""));
        assert!(with("amount_usd", json!(0)).contains("amount_usd: must be more than zero"));
        assert!(with("amount_usd", json!("1.0000001")).contains("more than six decimals"));
        assert!(with("scope", json!({ "pod": "x" })).contains("scope: unknown scope \"pod\""));
        assert!(with("scope", json!({ "team": "a", "model": "b" })).contains("scope: expected an object with one of"));
        assert!(with("scope", json!({ "filter": "namespace" })).contains("scope.filter: \"namespace\" is not"));
        assert!(with("period", json!("daily")).contains("period: expected \"monthly\" or \"weekly\""));
        assert!(with("thresholds", json!([{ "type": "actual", "percent": 0 }])).contains("thresholds[0].percent"));
        assert!(with("thresholds", json!([{ "type": "spend", "percent": 5 }])).contains("thresholds[0].type"));
        assert!(
            with("thresholds", json!([{ "type": "actual", "percent": 5 }, { "type": "actual", "percent": 5 }]))
                .contains("actual-5 is given twice")
        );
        assert!(with("limit", json!(1)).contains("unknown field \"limit\""));
        assert!(Budget::from_json("a/b", &ok).unwrap_err().contains("budget name \"a/b\""));
    }

    #[test]
    fn config_file_budgets_are_checked_with_the_file_and_budget_named() {
        let text = "[[budget]]\nname = \"vision\"\nscope = { team = \"vision\" }\namount_usd = 5000\nthresholds = [{ type = \"actual\", percent = 80 }]\n";
        let b = from_toml("budgets.toml", text).unwrap();
        assert_eq!(b[0].thresholds, vec![Threshold { basis: Basis::Actual, percent: 80 }]);
        let e = from_toml("budgets.toml", "[[budget]]\nname = \"x\"\nscope = { team = \"a\" }\namount_usd = -1\n")
            .unwrap_err();
        assert!(e.starts_with("budgets.toml: budget \"x\": amount_usd"), "{e}");
        let e = from_toml("budgets.toml", &format!("{text}{text}")).unwrap_err();
        assert!(e.contains("defined twice"), "{e}");
        let demo = from_toml("examples/budgets.toml", include_str!("../../examples/budgets.toml")).unwrap();
        assert_eq!(demo.len(), 5);
    }
}

//! Idle-GPU and spend-anomaly alert rules, from the budgets file (`[[idle_gpu]]` and `[[anomaly]]` tables beside
//! its `[[budget]]`s). Parsing checks every field and names the file, the rule and the field that is wrong.

use std::time::Duration;

use serde_json::Value;

use gpucost_types::dimension::Dimension;
use gpucost_types::policy::Policy;

use crate::budget_spec::{check_name, parse_usd};

/// A GPU held with no use for longer than `after` alerts, once per episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleRule {
    pub name: String,
    /// Only GPUs held by workloads of this team or namespace; `None`: every GPU.
    pub scope: Option<(Dimension, String)>,
    pub after: Duration,
}

/// How often spend is checked against its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// Spend of each team, model or namespace outside the band its seasonal model expects alerts, once per
/// episode.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRule {
    pub name: String,
    /// `team`, `model` or `namespace`.
    pub by: Dimension,
    pub every: Granularity,
    /// The band's probability (0.5 to 0.9999): 0.99 leaves one normal point in a hundred outside it.
    pub level: f64,
    /// Smallest distance from the expected spend that alerts, in micro-dollars (cents of noise do not).
    pub min_micros: u128,
    pub policy: Policy,
}

/// The alert rules of a budgets file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRules {
    pub idle_gpu: Vec<IdleRule>,
    pub anomaly: Vec<AnomalyRule>,
}

impl AlertRules {
    pub fn is_empty(&self) -> bool {
        self.idle_gpu.is_empty() && self.anomaly.is_empty()
    }
}

/// The dimensions an anomaly rule may watch.
pub const ANOMALY_BY: [&str; 3] = ["team", "model", "namespace"];

fn fields(obj: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field {k:?}; expected {}", allowed.join(", "))),
        None => Ok(()),
    }
}

fn text<'a>(obj: &'a serde_json::Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| format!("{field}: expected a string")),
    }
}

impl IdleRule {
    pub fn from_json(name: &str, v: &Value) -> Result<IdleRule, String> {
        check_name(name)?;
        let obj = v.as_object().ok_or("expected a table with name, scope and after")?;
        fields(obj, &["name", "scope", "after"])?;
        let scope = match obj.get("scope") {
            None => None,
            Some(s) => {
                let o = s
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .ok_or("scope: expected { team = \"…\" } or { namespace = \"…\" }, or no scope for every GPU")?;
                let (k, val) = o.iter().next().expect("one entry");
                let dim = match k.as_str() {
                    "team" => Dimension::Team,
                    "namespace" => Dimension::Namespace,
                    other => return Err(format!("scope: unknown scope {other:?}; expected team or namespace")),
                };
                let val = val
                    .as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("scope.{k}: expected a non-empty string"))?;
                Some((dim, val.to_string()))
            }
        };
        let after = text(obj, "after")?
            .ok_or("after: missing (how long a GPU is held unused before it alerts, e.g. \"4h\")")?;
        let after = humantime::parse_duration(after).map_err(|e| format!("after: {after:?}: {e}"))?;
        if after < Duration::from_secs(60) || after > Duration::from_secs(90 * 86_400) {
            return Err(format!("after: {} is not between 1m and 90d", humantime::format_duration(after)));
        }
        Ok(IdleRule { name: name.to_string(), scope, after })
    }
}

impl AnomalyRule {
    pub fn from_json(name: &str, v: &Value) -> Result<AnomalyRule, String> {
        check_name(name)?;
        let obj = v.as_object().ok_or("expected a table with name, by, every, level, min_usd and policy")?;
        fields(obj, &["name", "by", "every", "level", "min_usd", "policy"])?;
        let by = match text(obj, "by")? {
            Some("team") => Dimension::Team,
            Some("model") => Dimension::Model,
            Some("namespace") => Dimension::Namespace,
            Some(other) => return Err(format!("by: {other:?}; expected one of {}", ANOMALY_BY.join(", "))),
            None => return Err(format!("by: missing; one of {}", ANOMALY_BY.join(", "))),
        };
        let every = match text(obj, "every")? {
            None | Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(other) => return Err(format!("every: {other:?}; expected \"hour\" or \"day\"")),
        };
        let level = match obj.get("level") {
            None => 0.99,
            Some(l) => l
                .as_f64()
                .filter(|l| (0.5..=0.9999).contains(l))
                .ok_or_else(|| format!("level: {l}; expected a probability from 0.5 to 0.9999 (e.g. 0.99)"))?,
        };
        let min_micros = match obj.get("min_usd") {
            None => 5_000_000,
            Some(v) => parse_usd("min_usd", v)?,
        };
        let policy = match text(obj, "policy")? {
            None => Policy::Hybrid,
            Some(p) => Policy::parse(p)
                .ok_or_else(|| format!("policy: expected allocation, utilization or hybrid, got {p:?}"))?,
        };
        Ok(AnomalyRule { name: name.to_string(), by, every, level, min_micros, policy })
    }
}

/// The `[[idle_gpu]]` and `[[anomaly]]` tables of a budgets file.
pub fn from_toml(source: &str, text: &str) -> Result<AlertRules, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    let mut rules = AlertRules::default();
    let mut names: Vec<String> = Vec::new();
    for (table, what) in [("idle_gpu", "idle_gpu rule"), ("anomaly", "anomaly rule")] {
        let Some(list) = doc.get(table) else { continue };
        let list = list.as_array().ok_or_else(|| format!("{source}: {table}: expected [[{table}]] tables"))?;
        for (i, t) in list.iter().enumerate() {
            let v = serde_json::to_value(t).map_err(|e| format!("{source}: {what} {}: {e}", i + 1))?;
            let name = v["name"].as_str().ok_or_else(|| format!("{source}: {what} {}: name: missing", i + 1))?;
            if names.iter().any(|n| n == name) {
                return Err(format!("{source}: alert rule {name:?} is defined twice"));
            }
            names.push(name.to_string());
            let at = |e: String| format!("{source}: {what} {name:?}: {e}");
            match table {
                "idle_gpu" => rules.idle_gpu.push(IdleRule::from_json(name, &v).map_err(at)?),
                _ => rules.anomaly.push(AnomalyRule::from_json(name, &v).map_err(at)?),
            }
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_their_defaults() {
        let text = "[[budget]]\nname = \"b\"\nscope = { team = \"a\" }\namount_usd = 1\n\n\
                    [[idle_gpu]]\nname = \"notebooks-idle\"\nscope = { namespace = \"notebooks\" }\nafter = \"4h\"\n\n\
                    [[idle_gpu]]\nname = \"any-idle\"\nafter = \"1d\"\n\n\
                    [[anomaly]]\nname = \"team-spend\"\nby = \"team\"\n\n\
                    [[anomaly]]\nname = \"model-daily\"\nby = \"model\"\nevery = \"day\"\nlevel = 0.995\nmin_usd = \"25.5\"\npolicy = \"allocation\"\n";
        let r = from_toml("budgets.toml", text).unwrap();
        assert_eq!(r.idle_gpu[0].scope, Some((Dimension::Namespace, "notebooks".into())));
        assert_eq!(r.idle_gpu[0].after, Duration::from_secs(4 * 3600));
        assert_eq!(r.idle_gpu[1].scope, None);
        let a = &r.anomaly[0];
        assert_eq!(
            (a.by.clone(), a.every, a.level, a.min_micros, a.policy),
            (Dimension::Team, Granularity::Hour, 0.99, 5_000_000, Policy::Hybrid)
        );
        assert_eq!((r.anomaly[1].every, r.anomaly[1].min_micros), (Granularity::Day, 25_500_000));
        // The budgets in the same file still parse.
        assert_eq!(crate::budget_spec::from_toml("budgets.toml", text).unwrap().len(), 1);
        assert!(from_toml("x", "").unwrap().is_empty());
    }

    #[test]
    fn every_bad_field_is_named_with_the_file_and_rule() {
        let bad = |t: &str| from_toml("budgets.toml", t).unwrap_err();
        let e = bad("[[idle_gpu]]\nname = \"i\"\nafter = \"soon\"\n");
        assert!(e.starts_with("budgets.toml: idle_gpu rule \"i\": after: \"soon\""), "{e}");
        assert!(bad("[[idle_gpu]]\nname = \"i\"\n").contains("after: missing"));
        assert!(bad("[[idle_gpu]]\nname = \"i\"\nafter = \"10s\"\n").contains("not between 1m and 90d"));
        assert!(
            bad("[[idle_gpu]]\nname = \"i\"\nafter = \"1h\"\nscope = { pod = \"p\" }\n")
                .contains("unknown scope \"pod\"")
        );
        let e = bad("[[anomaly]]\nname = \"a\"\nby = \"pod\"\n");
        assert!(e.starts_with("budgets.toml: anomaly rule \"a\": by: \"pod\""), "{e}");
        assert!(bad("[[anomaly]]\nname = \"a\"\nby = \"team\"\nevery = \"week\"\n").contains("every: \"week\""));
        assert!(bad("[[anomaly]]\nname = \"a\"\nby = \"team\"\nlevel = 1.5\n").contains("level: 1.5"));
        assert!(bad("[[anomaly]]\nname = \"a\"\nby = \"team\"\nmin_usd = \"x\"\n").contains("min_usd: \"x\""));
        assert!(bad("[[anomaly]]\nname = \"a\"\nby = \"team\"\nsize = 1\n").contains("unknown field \"size\""));
        assert!(
            bad("[[anomaly]]\nname = \"a\"\nby = \"team\"\n[[idle_gpu]]\nname = \"a\"\nafter = \"1h\"\n")
                .contains("defined twice")
        );
        assert!(bad("[[anomaly]]\nby = \"team\"\n").contains("anomaly rule 1: name: missing"));
    }
}

//! The price book: the shipped AWS catalogue (`data/aws-gpu-prices.csv`) plus the operator's prices file
//! (`--prices`, TOML), resolved per node and time into a price per GPU, or into the reason it is unpriced.
//!
//! Resolution, first match wins: an instance-type override (optionally per region), a GPU-model
//! override, the catalogue for the node's region, the catalogue for a region priced `like` another.
//! Spot nodes get their spot price or the spot discount; other nodes the commitment (Savings Plan / RI)
//! discount. Overrides apply from their `effective_from`; stored history is never re-priced implicitly.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use gpucost_types::batch::Node;
use gpucost_types::money::Micros;
use gpucost_types::money::{GpuPrice, parse_usd};

const CATALOGUE: &str = include_str!("../data/aws-gpu-prices.csv");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub gpus: u32,
    pub gpu_model: String,
    /// Memory per GPU, GiB.
    pub gpu_memory_gib: u32,
    /// `None`: the type is known but has no price in the catalogue.
    pub micros_per_hour: Option<Micros>,
}

/// Parses the catalogue CSV: (instance type, region) → entry.
pub fn parse_catalogue(text: &str) -> Result<HashMap<(String, String), CatalogueEntry>, String> {
    let mut out = HashMap::new();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    if header != "instance_type,gpus,gpu_model,gpu_memory_gib,region,usd_per_hour" {
        return Err(format!("unexpected catalogue header {header:?}"));
    }
    for (n, line) in lines {
        let f: Vec<&str> = line.split(',').collect();
        let [instance, gpus, model, mem, region, price] = f[..] else {
            return Err(format!("line {}: expected 6 fields, got {}", n + 1, f.len()));
        };
        let gpus = gpus.parse().map_err(|_| format!("line {}: gpus {gpus:?} is not a number", n + 1))?;
        let gpu_memory_gib =
            mem.parse().map_err(|_| format!("line {}: gpu_memory_gib {mem:?} is not a number", n + 1))?;
        let micros_per_hour =
            if price.is_empty() { None } else { Some(parse_usd(price).map_err(|e| format!("line {}: {e}", n + 1))?) };
        out.insert(
            (instance.to_string(), region.to_string()),
            CatalogueEntry { gpus, gpu_model: model.to_string(), gpu_memory_gib, micros_per_hour },
        );
    }
    Ok(out)
}

/// An amount in the prices file: a string (`"32.7726"`, exact) or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(f64),
}

impl Amount {
    fn micros(&self, at: &str) -> Result<Micros, String> {
        match self {
            Amount::Text(s) => parse_usd(s).map_err(|e| format!("{at}: {e}")),
            Amount::Number(x) if x.is_finite() && *x >= 0.0 => Ok((x * 1e6).round() as Micros),
            Amount::Number(x) => Err(format!("{at}: {x} is not a price")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    #[serde(default)]
    spot_discount_percent: Option<f64>,
    #[serde(default)]
    commitment_discount_percent: Option<f64>,
    #[serde(default)]
    instance: Vec<InstanceRow>,
    #[serde(default)]
    gpu_model: Vec<ModelRow>,
    #[serde(default)]
    region: Vec<RegionRow>,
    #[serde(default)]
    grid: Vec<GridRow>,
    #[serde(default)]
    node_label: Vec<NodeLabelRow>,
}

/// A price for the nodes carrying a label (a reserved node group, a Karpenter node pool, …).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeLabelRow {
    key: String,
    value: String,
    usd_per_hour: Amount,
    gpus: Option<u32>,
    effective_from: Option<String>,
}

#[derive(Debug, Clone)]
struct LabelOverride {
    key: String,
    value: String,
    micros_per_hour: Micros,
    gpus: Option<u32>,
    from_ns: u64,
}

/// The carbon intensity of a region's grid, to turn energy into CO2e.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridRow {
    region: String,
    grams_co2e_per_kwh: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceRow {
    instance_type: String,
    region: Option<String>,
    usd_per_hour: Amount,
    spot_usd_per_hour: Option<Amount>,
    gpus: Option<u32>,
    effective_from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRow {
    model: String,
    usd_per_gpu_hour: Amount,
    effective_from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionRow {
    region: String,
    like: String,
    percent: f64,
}

#[derive(Debug, Clone)]
struct InstanceOverride {
    instance_type: String,
    region: Option<String>,
    micros_per_hour: Micros,
    spot_micros_per_hour: Option<Micros>,
    gpus: Option<u32>,
    from_ns: u64,
}

#[derive(Debug, Clone)]
struct ModelOverride {
    model: String,
    micros_per_gpu_hour: Micros,
    from_ns: u64,
}

/// What a name in the prices file has to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    InstanceType,
    Region,
    /// A region the catalogue has prices for (a `[[region]]` rule's `like`).
    CatalogueRegion,
    GpuModel,
    /// A node label's value, for the key given.
    Label,
}

/// A name an entry of the prices file gives, to check that it can ever apply.
#[derive(Debug, Clone)]
struct Named {
    /// `instance[2].instance_type`.
    at: String,
    subject: Subject,
    /// For a label: its key.
    key: String,
    value: String,
}

/// What the ledger's nodes are: the instance types, regions, GPU models and labels a prices file's entries
/// can match beyond the catalogue's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    pub instance_types: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    pub gpu_models: BTreeSet<String>,
    /// (key, value) of every node label.
    pub labels: BTreeSet<(String, String)>,
}

/// An entry of the prices file that can never apply: what it names matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The entry and key: `instance[0].instance_type`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// AWS regions (commercial, GovCloud, China), so that a rule for a region the catalogue has no prices for
/// (the reason to write one) is told from a misspelt one.
const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// The known name closest to `name`, when close enough to be a slip (`p5.48xlarg` → `p5.48xlarge`): at most
/// two edits, or a quarter of the name, or the same but for case.
pub fn near_miss<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .into_iter()
        .map(|k| (if k.to_lowercase() == lower { 0 } else { edit_distance(&lower, &k.to_lowercase()) }, k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Prices in force, from the catalogue and the operator's file.
#[derive(Debug, Clone)]
pub struct PriceBook {
    catalogue: HashMap<(String, String), CatalogueEntry>,
    /// Every name the file's entries give, to tell the entries that can never apply.
    named: Vec<Named>,
    labels: Vec<LabelOverride>,
    instances: Vec<InstanceOverride>,
    models: Vec<ModelOverride>,
    regions: HashMap<String, (String, u64)>,
    /// Milligrams of CO2e per kWh, per region.
    grid_mg_per_kwh: HashMap<String, u64>,
    /// Basis points off on-demand.
    spot_discount_bps: u64,
    commitment_discount_bps: u64,
    /// Prices fetched from AWS, taken over the catalogue (`with_fetched`).
    fetched: crate::fetched::FetchedRates,
}

fn bps(percent: Option<f64>, at: &str) -> Result<u64, String> {
    match percent {
        None => Ok(0),
        Some(p) if (0.0..=100.0).contains(&p) => Ok((p * 100.0).round() as u64),
        Some(p) => Err(format!("{at}: {p} is not a percentage between 0 and 100")),
    }
}

/// `ns` since the epoch as an RFC 3339 UTC time, to the second.
fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string()
}

fn effective(at: &str, s: &Option<String>) -> Result<u64, String> {
    let Some(s) = s else { return Ok(0) };
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{at}.effective_from: {s:?}: {e} (expected e.g. 2026-12-01T00:00:00Z)"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{at}.effective_from: before 1970"))?.as_nanos()
        as u64)
}

/// Why a GPU has no price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpriced {
    pub reason: String,
}

impl PriceBook {
    /// The shipped catalogue alone.
    pub fn catalogue_only() -> Self {
        Self::with_file_text(None).expect("the shipped catalogue parses (tested)")
    }

    /// The catalogue plus the text of a prices file (`None`: the catalogue alone); errors name the entry and the key.
    pub fn with_file_text(text: Option<&str>) -> Result<Self, String> {
        let catalogue = parse_catalogue(CATALOGUE).map_err(|e| format!("built-in catalogue: {e}"))?;
        let file: PricesFile = match text {
            Some(t) => toml::from_str(t).map_err(|e| e.to_string())?,
            None => PricesFile {
                spot_discount_percent: None,
                commitment_discount_percent: None,
                instance: vec![],
                gpu_model: vec![],
                region: vec![],
                grid: vec![],
                node_label: vec![],
            },
        };
        let mut named = Vec::new();
        let mut name = |at: String, subject: Subject, key: &str, value: &str| {
            named.push(Named { at, subject, key: key.to_string(), value: value.to_string() })
        };
        for (i, r) in file.instance.iter().enumerate() {
            name(format!("instance[{i}].instance_type"), Subject::InstanceType, "", &r.instance_type);
            if let Some(region) = &r.region {
                name(format!("instance[{i}].region"), Subject::Region, "", region);
            }
        }
        for (i, r) in file.gpu_model.iter().enumerate() {
            name(format!("gpu_model[{i}].model"), Subject::GpuModel, "", &r.model);
        }
        for (i, r) in file.region.iter().enumerate() {
            name(format!("region[{i}].region"), Subject::Region, "", &r.region);
            name(format!("region[{i}].like"), Subject::CatalogueRegion, "", &r.like);
        }
        for (i, r) in file.grid.iter().enumerate() {
            name(format!("grid[{i}].region"), Subject::Region, "", &r.region);
        }
        for (i, r) in file.node_label.iter().enumerate() {
            name(format!("node_label[{i}]"), Subject::Label, &r.key, &r.value);
        }
        let mut instances = Vec::new();
        for (i, r) in file.instance.iter().enumerate() {
            let at = format!("instance[{i}]");
            instances.push(InstanceOverride {
                instance_type: r.instance_type.clone(),
                region: r.region.clone(),
                micros_per_hour: r.usd_per_hour.micros(&format!("{at}.usd_per_hour"))?,
                spot_micros_per_hour: r
                    .spot_usd_per_hour
                    .as_ref()
                    .map(|a| a.micros(&format!("{at}.spot_usd_per_hour")))
                    .transpose()?,
                gpus: match r.gpus {
                    Some(0) => return Err(format!("{at}.gpus: must be at least 1")),
                    g => g,
                },
                from_ns: effective(&at, &r.effective_from)?,
            });
        }
        let mut labels = Vec::new();
        for (i, r) in file.node_label.iter().enumerate() {
            let at = format!("node_label[{i}]");
            if r.gpus == Some(0) {
                return Err(format!("{at}.gpus: must be at least 1"));
            }
            labels.push(LabelOverride {
                key: r.key.clone(),
                value: r.value.clone(),
                micros_per_hour: r.usd_per_hour.micros(&format!("{at}.usd_per_hour"))?,
                gpus: r.gpus,
                from_ns: effective(&at, &r.effective_from)?,
            });
        }
        labels.sort_by_key(|o| std::cmp::Reverse(o.from_ns));
        let mut models = Vec::new();
        for (i, r) in file.gpu_model.iter().enumerate() {
            let at = format!("gpu_model[{i}]");
            models.push(ModelOverride {
                model: r.model.clone(),
                micros_per_gpu_hour: r.usd_per_gpu_hour.micros(&format!("{at}.usd_per_gpu_hour"))?,
                from_ns: effective(&at, &r.effective_from)?,
            });
        }
        let mut regions = HashMap::new();
        for (i, r) in file.region.iter().enumerate() {
            if !(1.0..=1000.0).contains(&r.percent) {
                return Err(format!("region[{i}].percent: {} is not a sensible percentage of {}", r.percent, r.like));
            }
            regions.insert(r.region.clone(), (r.like.clone(), (r.percent * 100.0).round() as u64));
        }
        let mut grid_mg_per_kwh = HashMap::new();
        for (i, g) in file.grid.iter().enumerate() {
            if !(0.0..=2_000.0).contains(&g.grams_co2e_per_kwh) {
                return Err(format!(
                    "grid[{i}].grams_co2e_per_kwh: {} is not a grid intensity (0..2000 g/kWh)",
                    g.grams_co2e_per_kwh
                ));
            }
            grid_mg_per_kwh.insert(g.region.clone(), (g.grams_co2e_per_kwh * 1_000.0).round() as u64);
        }
        // Latest first, so the first match in force wins.
        instances.sort_by_key(|o| std::cmp::Reverse(o.from_ns));
        models.sort_by_key(|o| std::cmp::Reverse(o.from_ns));
        Ok(Self {
            catalogue,
            named,
            labels,
            instances,
            models,
            regions,
            grid_mg_per_kwh,
            spot_discount_bps: bps(file.spot_discount_percent, "spot_discount_percent")?,
            commitment_discount_bps: bps(file.commitment_discount_percent, "commitment_discount_percent")?,
            fetched: Default::default(),
        })
    }

    /// This book with prices fetched from AWS (the Price List API, EC2 spot price history), which take the
    /// catalogue's place wherever they have a price in force; the prices file still wins over them.
    pub fn with_fetched(mut self, rates: Vec<crate::fetched::FetchedRate>) -> Self {
        self.fetched = crate::fetched::FetchedRates::new(rates);
        self
    }

    /// The prices file's entries that can never apply: an instance type, GPU model or region that neither
    /// the catalogue nor `ledger` (the nodes stored, when known) has, a `[[region]]` rule `like` a region
    /// the catalogue has no prices for, a node label no node carries (checked only against `ledger`). Each
    /// says what it did not match, and the near miss where there is one.
    pub fn unmatched(&self, ledger: Option<&Subjects>) -> Vec<Unmatched> {
        let mut types: BTreeSet<&str> = self.catalogue.keys().map(|(t, _)| t.as_str()).collect();
        let mut models: BTreeSet<&str> = self.catalogue.values().map(|e| e.gpu_model.as_str()).collect();
        let priced_regions: BTreeSet<&str> = self.catalogue.keys().map(|(_, r)| r.as_str()).collect();
        let mut regions: BTreeSet<&str> = AWS_REGIONS.iter().copied().chain(priced_regions.iter().copied()).collect();
        if let Some(l) = ledger {
            types.extend(l.instance_types.iter().map(String::as_str));
            models.extend(l.gpu_models.iter().map(String::as_str));
            regions.extend(l.regions.iter().map(String::as_str));
        }
        let whose = if ledger.is_some() { "the catalogue or the ledger's nodes" } else { "the catalogue" };
        let mut out = Vec::new();
        for n in &self.named {
            let (known, what): (Vec<&str>, String) = match n.subject {
                Subject::InstanceType => (types.iter().copied().collect(), format!("no instance type in {whose}")),
                Subject::GpuModel => (models.iter().copied().collect(), format!("no GPU model in {whose}")),
                Subject::Region => {
                    (regions.iter().copied().collect(), format!("no AWS region and no region of {whose}"))
                }
                Subject::CatalogueRegion => {
                    (priced_regions.iter().copied().collect(), "no region the catalogue has prices for".into())
                }
                Subject::Label => match ledger {
                    None => continue,
                    Some(l) => {
                        let values: Vec<&str> =
                            l.labels.iter().filter(|(k, _)| *k == n.key).map(|(_, v)| v.as_str()).collect();
                        if values.contains(&n.value.as_str()) {
                            continue;
                        }
                        let message = match near_miss(&n.value, values.iter().copied()) {
                            Some(m) => {
                                format!("no node carries the label {}={:?} (did you mean {m:?}?)", n.key, n.value)
                            }
                            None => format!("no node carries the label {}={:?}", n.key, n.value),
                        };
                        out.push(Unmatched { at: n.at.clone(), message });
                        continue;
                    }
                },
            };
            if known.contains(&n.value.as_str()) {
                continue;
            }
            let hint = match near_miss(&n.value, known.iter().copied()) {
                Some(m) => format!(" (did you mean {m:?}?)"),
                None => String::new(),
            };
            out.push(Unmatched { at: n.at.clone(), message: format!("{:?} matches {what}{hint}", n.value) });
        }
        out
    }

    /// The GPU instance types the catalogue knows in `region` (or in the region it is priced `like`), by name:
    /// what a right-sizing may propose there (`recommend`).
    pub fn instance_types_in(&self, region: &str) -> Vec<(String, CatalogueEntry)> {
        let like = self.regions.get(region).map_or(region, |(r, _)| r.as_str());
        let mut out: Vec<(String, CatalogueEntry)> = self
            .catalogue
            .iter()
            .filter(|((_, r), _)| r == region || r == like)
            .map(|((t, _), e)| (t.clone(), e.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// GPUs of `instance_type`, if the catalogue knows it as a GPU instance type.
    pub fn gpus_of(&self, instance_type: &str) -> Option<u32> {
        self.catalogue.iter().find(|((t, _), _)| t == instance_type).map(|(_, e)| e.gpus)
    }

    /// Whether the catalogue knows `instance_type` as an instance with `gpus` GPUs of `model` (any region).
    pub fn describes(&self, instance_type: &str, gpus: u32, model: &str) -> bool {
        self.catalogue
            .iter()
            .any(|((t, _), e)| t == instance_type && e.gpus == gpus && (model.is_empty() || e.gpu_model == model))
    }

    /// CO2e in milligrams for `energy_mj` millijoules used in `region`, where a grid factor is configured.
    pub fn co2e_mg(&self, region: &str, energy_mj: u64) -> Option<u64> {
        let mg_per_kwh = self.grid_mg_per_kwh.get(region)?;
        Some((u128::from(energy_mj) * u128::from(*mg_per_kwh) / 3_600_000_000) as u64)
    }

    fn discounted(&self, micros: Micros, spot: bool) -> Micros {
        let bps = if spot { self.spot_discount_bps } else { self.commitment_discount_bps };
        (u128::from(micros) * u128::from(10_000 - bps) / 10_000) as Micros
    }

    /// The price of one physical GPU of `node` (model `gpu_model`, `node_gpus` GPUs reported) in force at `at_ns`.
    pub fn price(&self, node: &Node, gpu_model: &str, node_gpus: u32, at_ns: u64) -> Result<GpuPrice, Unpriced> {
        let spot = node.capacity_type == "spot";
        let capacity = if spot { "spot" } else { node.capacity_type.as_str() };
        let in_force = self.instances.iter().find(|o| {
            o.from_ns <= at_ns
                && o.instance_type == node.instance_type
                && o.region.as_ref().is_none_or(|r| *r == node.region)
        });
        let catalogue = self.catalogue.get(&(node.instance_type.clone(), node.region.clone()));
        let gpus = |declared: Option<u32>| declared.or(catalogue.map(|c| c.gpus)).unwrap_or(node_gpus).max(1);
        if let Some(o) = self.labels.iter().find(|o| o.from_ns <= at_ns && node.labels.get(&o.key) == Some(&o.value)) {
            return Ok(GpuPrice {
                instance_micros_per_hour: o.micros_per_hour,
                gpus: gpus(o.gpus),
                source: format!("prices file: node label {}={}", o.key, o.value),
            });
        }
        if let Some(o) = in_force {
            let (micros, how) = match (spot, o.spot_micros_per_hour) {
                (true, Some(s)) => (s, "spot price".to_string()),
                _ => (self.discounted(o.micros_per_hour, spot), format!("{capacity}, discount applied")),
            };
            return Ok(GpuPrice {
                instance_micros_per_hour: micros,
                gpus: gpus(o.gpus),
                source: format!("prices file: {} ({how})", o.instance_type),
            });
        }
        if let Some(m) = self.models.iter().find(|m| m.from_ns <= at_ns && m.model == gpu_model) {
            return Ok(GpuPrice {
                instance_micros_per_hour: self.discounted(m.micros_per_gpu_hour, spot),
                gpus: 1,
                source: format!("prices file: GPU model {gpu_model} ({capacity})"),
            });
        }
        if spot && let Some(r) = self.fetched.spot(&node.instance_type, &node.region, &node.zone, at_ns) {
            return Ok(GpuPrice {
                instance_micros_per_hour: r.micros_per_hour,
                gpus: gpus(None),
                source: format!(
                    "AWS spot price history: {} spot in {} as of {} ({})",
                    node.instance_type,
                    node.zone,
                    rfc3339(r.effective_ns),
                    r.provenance
                ),
            });
        }
        if let Some(r) = self.fetched.on_demand(&node.instance_type, &node.region, at_ns) {
            return Ok(GpuPrice {
                instance_micros_per_hour: self.discounted(r.micros_per_hour, spot),
                gpus: gpus(None),
                source: format!(
                    "AWS Price List: {} on-demand in {} as of {} ({}) ({capacity})",
                    node.instance_type,
                    node.region,
                    rfc3339(r.effective_ns),
                    r.provenance
                ),
            });
        }
        let (entry, via) = match catalogue {
            Some(e) => (Some(e), None),
            None => match self.regions.get(&node.region) {
                Some((like, pct)) => {
                    (self.catalogue.get(&(node.instance_type.clone(), like.clone())), Some((like, *pct)))
                }
                None => (None, None),
            },
        };
        let Some(entry) = entry else {
            return Err(Unpriced {
                reason: format!("no price for {} in {} (add one to the prices file)", node.instance_type, node.region),
            });
        };
        let Some(base) = entry.micros_per_hour else {
            return Err(Unpriced {
                reason: format!("{} has no catalogue price (add one to the prices file)", node.instance_type),
            });
        };
        let (base, region_note) = match via {
            Some((like, pct)) => (
                (u128::from(base) * u128::from(pct) / 10_000) as Micros,
                format!(", priced as {like} × {}%", pct as f64 / 100.0),
            ),
            None => (base, String::new()),
        };
        Ok(GpuPrice {
            instance_micros_per_hour: self.discounted(base, spot),
            gpus: entry.gpus.max(1),
            source: format!(
                "AWS catalogue: {} on-demand in {}{region_note} ({capacity})",
                node.instance_type, node.region
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(instance: &str, region: &str, capacity: &str) -> Node {
        Node {
            cluster: "c".into(),
            name: "n".into(),
            instance_type: instance.into(),
            capacity_type: capacity.into(),
            region: region.into(),
            zone: String::new(),
            labels: Default::default(),
        }
    }

    const T: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn the_shipped_catalogue_parses_and_prices_a_known_node() {
        let book = PriceBook::catalogue_only();
        let p = book.price(&node("p4d.24xlarge", "us-east-1", "on_demand"), "NVIDIA A100-SXM4-40GB", 8, T).unwrap();
        assert_eq!((p.instance_micros_per_hour, p.gpus), (21_957_642, 8), "the post-June-2025 price");
        assert!(p.source.contains("AWS catalogue"), "{}", p.source);
    }

    #[test]
    fn fetched_prices_take_the_catalogues_place_and_the_prices_file_still_wins() {
        use crate::fetched::{FetchedRate, FetchedSource};
        let rate = |source, zone: &str, effective_ns, micros| FetchedRate {
            source,
            region: "us-east-1".into(),
            zone: zone.into(),
            instance_type: "p4d.24xlarge".into(),
            effective_ns,
            micros_per_hour: micros,
            provenance: "SKU.TERM.RATE".into(),
        };
        let rates = vec![
            rate(FetchedSource::PriceList, "", T, 20_000_000),
            rate(FetchedSource::Spot, "us-east-1a", T, 9_000_000),
        ];
        let file = "spot_discount_percent = 50\n";
        let book = PriceBook::with_file_text(Some(file)).unwrap().with_fetched(rates.clone());
        let mut spot_a = node("p4d.24xlarge", "us-east-1", "spot");
        spot_a.zone = "us-east-1a".into();
        let mut spot_b = spot_a.clone();
        spot_b.zone = "us-east-1b".into();
        let on_demand = node("p4d.24xlarge", "us-east-1", "on_demand");
        let m = "NVIDIA A100-SXM4-40GB";

        let p = book.price(&on_demand, m, 8, T).unwrap();
        assert_eq!((p.instance_micros_per_hour, p.gpus), (20_000_000, 8));
        assert!(p.source.starts_with("AWS Price List: p4d.24xlarge on-demand in us-east-1 as of "), "{}", p.source);
        assert!(p.source.contains("SKU.TERM.RATE"), "{}", p.source);
        let p = book.price(&spot_a, m, 8, T).unwrap();
        assert_eq!(p.instance_micros_per_hour, 9_000_000, "the zone's spot price, no discount on top");
        assert!(p.source.starts_with("AWS spot price history: p4d.24xlarge spot in us-east-1a"), "{}", p.source);
        let p = book.price(&spot_b, m, 8, T).unwrap();
        assert_eq!(p.instance_micros_per_hour, 10_000_000, "no spot price there: on demand less the spot discount");
        let p = book.price(&on_demand, m, 8, T - 1).unwrap();
        assert_eq!(p.instance_micros_per_hour, 21_957_642, "before the fetched price took effect: the catalogue");
        assert!(p.source.contains("AWS catalogue"), "{}", p.source);

        let file = "[[instance]]\ninstance_type = \"p4d.24xlarge\"\nusd_per_hour = \"15\"\nspot_usd_per_hour = \"5\"\n";
        let book = PriceBook::with_file_text(Some(file)).unwrap().with_fetched(rates);
        assert_eq!(book.price(&on_demand, m, 8, T).unwrap().instance_micros_per_hour, 15_000_000);
        assert_eq!(book.price(&spot_a, m, 8, T).unwrap().instance_micros_per_hour, 5_000_000);
    }

    #[test]
    fn unknown_types_regions_and_catalogue_rows_without_a_price_are_unpriced_not_free() {
        let book = PriceBook::catalogue_only();
        let e = book.price(&node("x9.mega", "us-east-1", "on_demand"), "?", 8, T).unwrap_err();
        assert!(e.reason.contains("no price for x9.mega in us-east-1"), "{}", e.reason);
        assert!(book.price(&node("g5.xlarge", "eu-west-1", "on_demand"), "NVIDIA A10G", 1, T).is_err());
        assert!(
            book.price(&node("p5e.48xlarge", "us-east-1", "on_demand"), "NVIDIA H200", 8, T)
                .unwrap_err()
                .reason
                .contains("no catalogue price")
        );
    }

    #[test]
    fn overrides_discounts_and_regions_apply_from_their_effective_date() {
        let file = r#"
            spot_discount_percent = 60
            commitment_discount_percent = 25
            [[instance]]
            instance_type = "p5en.48xlarge"
            usd_per_hour = "80.00"
            [[instance]]
            instance_type = "g5.xlarge"
            usd_per_hour = "0.90"
            spot_usd_per_hour = "0.35"
            effective_from = "2030-01-01T00:00:00Z"
            [[gpu_model]]
            model = "NVIDIA B200"
            usd_per_gpu_hour = 12.5
            [[region]]
            region = "eu-west-1"
            like = "us-east-1"
            percent = 112
        "#;
        let book = PriceBook::with_file_text(Some(file)).unwrap();
        let p = book.price(&node("p5en.48xlarge", "us-east-1", "on_demand"), "NVIDIA H200", 8, T).unwrap();
        assert_eq!((p.instance_micros_per_hour, p.gpus), (60_000_000, 8), "25 % commitment discount on the override");
        let spot = book.price(&node("g5.xlarge", "us-east-1", "spot"), "NVIDIA A10G", 1, T).unwrap();
        assert_eq!(spot.instance_micros_per_hour, 402_400, "before 2030 the catalogue with the 60 % spot discount");
        let later =
            book.price(&node("g5.xlarge", "us-east-1", "spot"), "NVIDIA A10G", 1, 1_900_000_000_000_000_000).unwrap();
        assert_eq!(later.instance_micros_per_hour, 350_000, "from 2030 the override's spot price");
        let b200 = book.price(&node("p6-b200.48xlarge", "us-east-1", "on_demand"), "NVIDIA B200", 8, T).unwrap();
        assert_eq!((b200.instance_micros_per_hour, b200.gpus), (9_375_000, 1));
        let eu = book.price(&node("g5.xlarge", "eu-west-1", "on_demand"), "NVIDIA A10G", 1, T).unwrap();
        assert_eq!(eu.instance_micros_per_hour, 1_006_000 * 112 / 100 * 75 / 100);
        assert!(eu.source.contains("priced as us-east-1"), "{}", eu.source);
    }

    #[test]
    fn a_node_label_price_wins_and_is_taken_as_the_effective_rate() {
        let file = "commitment_discount_percent = 30\n[[node_label]]\nkey = \"eks.amazonaws.com/nodegroup\"\nvalue = \"a100-reserved\"\nusd_per_hour = \"20.00\"\n";
        let book = PriceBook::with_file_text(Some(file)).unwrap();
        let mut n = node("p4d.24xlarge", "us-east-1", "on_demand");
        n.labels.insert("eks.amazonaws.com/nodegroup".into(), "a100-reserved".into());
        let p = book.price(&n, "NVIDIA A100-SXM4-40GB", 8, T).unwrap();
        assert_eq!((p.instance_micros_per_hour, p.gpus), (20_000_000, 8), "no discount on top of a negotiated price");
        assert!(p.source.contains("node label eks.amazonaws.com/nodegroup=a100-reserved"));
        let other = book.price(&node("p4d.24xlarge", "us-east-1", "on_demand"), "NVIDIA A100-SXM4-40GB", 8, T).unwrap();
        assert_eq!(other.instance_micros_per_hour, 21_957_642 * 70 / 100);
    }

    #[test]
    fn energy_becomes_co2e_where_the_grid_is_known() {
        let book =
            PriceBook::with_file_text(Some("[[grid]]\nregion = \"eu-west-1\"\ngrams_co2e_per_kwh = 300\n")).unwrap();
        assert_eq!(book.co2e_mg("eu-west-1", 3_600_000_000), Some(300_000), "1 kWh at 300 g/kWh");
        assert_eq!(book.co2e_mg("us-east-1", 3_600_000_000), None);
    }

    #[test]
    fn entries_that_match_nothing_are_named_with_the_near_miss() {
        let file = r#"
            [[instance]]
            instance_type = "p5.48xlarg"
            usd_per_hour = "60"
            [[instance]]
            instance_type = "p4d.24xlarge"
            region = "eu-wset-1"
            usd_per_hour = "30"
            [[gpu_model]]
            model = "nvidia a10g"
            usd_per_gpu_hour = "1"
            [[gpu_model]]
            model = "Acme Tensor 9000"
            usd_per_gpu_hour = "1"
            [[region]]
            region = "eu-west-1"
            like = "us-east-1"
            percent = 112
            [[region]]
            region = "ap-south-1"
            like = "eu-west-1"
            percent = 100
            [[grid]]
            region = "us-east-1"
            grams_co2e_per_kwh = 380
            [[node_label]]
            key = "pool"
            value = "reserverd"
            usd_per_hour = "20"
        "#;
        let book = PriceBook::with_file_text(Some(file)).unwrap();
        let at_load: Vec<String> = book.unmatched(None).iter().map(ToString::to_string).collect();
        assert_eq!(
            at_load,
            vec![
                "instance[0].instance_type: \"p5.48xlarg\" matches no instance type in the catalogue (did you mean \"p5.48xlarge\"?)",
                "instance[1].region: \"eu-wset-1\" matches no AWS region and no region of the catalogue (did you mean \"eu-west-1\"?)",
                "gpu_model[0].model: \"nvidia a10g\" matches no GPU model in the catalogue (did you mean \"NVIDIA A10G\"?)",
                "gpu_model[1].model: \"Acme Tensor 9000\" matches no GPU model in the catalogue",
                "region[1].like: \"eu-west-1\" matches no region the catalogue has prices for",
            ],
            "a region rule for a real AWS region and a grid factor match; labels are unknown before nodes are"
        );
        let ledger = Subjects {
            gpu_models: ["Acme Tensor 9000".to_string()].into(),
            labels: [("pool".to_string(), "reserved".to_string())].into(),
            ..Default::default()
        };
        let with_nodes: Vec<String> = book.unmatched(Some(&ledger)).iter().map(|u| u.at.clone()).collect();
        assert_eq!(
            with_nodes,
            [
                "instance[0].instance_type",
                "instance[1].region",
                "gpu_model[0].model",
                "region[1].like",
                "node_label[0]"
            ],
            "a model the ledger's GPUs have matches"
        );
        assert!(book.unmatched(Some(&ledger))[4].message.contains("did you mean \"reserved\""));
        let demo = PriceBook::with_file_text(Some(include_str!("../data/demo-prices.toml"))).unwrap();
        assert_eq!(demo.unmatched(None), vec![], "the demo's own file matches");
    }

    #[test]
    fn near_misses_are_slips_not_guesses() {
        let known = ["p5.48xlarge", "p4d.24xlarge", "g5.xlarge"];
        assert_eq!(near_miss("p5.48xlarg", known), Some("p5.48xlarge"));
        assert_eq!(near_miss("P4D.24XLARGE", known), Some("p4d.24xlarge"));
        assert_eq!(near_miss("g6.xlarge", known), Some("g5.xlarge"));
        assert_eq!(near_miss("x9.mega", known), None);
        assert_eq!(edit_distance("eu-wset-1", "eu-west-1"), 2);
    }

    #[test]
    fn a_bad_prices_file_says_which_entry_and_key() {
        let e =
            PriceBook::with_file_text(Some("[[instance]]\ninstance_type = \"g5.xlarge\"\nusd_per_hour = \"1,00\"\n"))
                .unwrap_err();
        assert!(e.contains("instance[0].usd_per_hour") && e.contains("\"1,00\""), "{e}");
        let e = PriceBook::with_file_text(Some("spot_discount_percent = 140\n")).unwrap_err();
        assert!(e.contains("spot_discount_percent"), "{e}");
        let e = PriceBook::with_file_text(Some("[[instance]]\ninstance_typo = \"x\"\n")).unwrap_err();
        assert!(e.contains("instance_typo"), "{e}");
        let e = PriceBook::with_file_text(Some(
            "[[gpu_model]]\nmodel = \"X\"\nusd_per_gpu_hour = \"1\"\neffective_from = \"soon\"\n",
        ))
        .unwrap_err();
        assert!(e.contains("gpu_model[0].effective_from"), "{e}");
    }
}

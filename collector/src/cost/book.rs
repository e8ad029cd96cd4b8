//! The price book: the shipped AWS catalogue (`data/aws-gpu-prices.csv`) plus the operator's prices file
//! (`--prices`, TOML), resolved per node and time into a price per GPU, or into the reason it is unpriced.
//!
//! Resolution, first match wins: an instance-type override (optionally per region), a GPU-model
//! override, the catalogue for the node's region, the catalogue for a region priced `like` another.
//! Spot nodes get their spot price or the spot discount; other nodes the commitment (Savings Plan / RI)
//! discount. Overrides apply from their `effective_from`; stored history is never re-priced implicitly.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::price::{GpuPrice, parse_usd};
use super::split::Micros;
use crate::model::Node;

const CATALOGUE: &str = include_str!("../../data/aws-gpu-prices.csv");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub gpus: u32,
    pub gpu_model: String,
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
        let [instance, gpus, model, _mem, region, price] = f[..] else {
            return Err(format!("line {}: expected 6 fields, got {}", n + 1, f.len()));
        };
        let gpus = gpus.parse().map_err(|_| format!("line {}: gpus {gpus:?} is not a number", n + 1))?;
        let micros_per_hour =
            if price.is_empty() { None } else { Some(parse_usd(price).map_err(|e| format!("line {}: {e}", n + 1))?) };
        out.insert(
            (instance.to_string(), region.to_string()),
            CatalogueEntry { gpus, gpu_model: model.to_string(), micros_per_hour },
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

/// Prices in force, from the catalogue and the operator's file.
#[derive(Debug, Clone)]
pub struct PriceBook {
    catalogue: HashMap<(String, String), CatalogueEntry>,
    labels: Vec<LabelOverride>,
    instances: Vec<InstanceOverride>,
    models: Vec<ModelOverride>,
    regions: HashMap<String, (String, u64)>,
    /// Milligrams of CO2e per kWh, per region.
    grid_mg_per_kwh: HashMap<String, u64>,
    /// Basis points off on-demand.
    spot_discount_bps: u64,
    commitment_discount_bps: u64,
}

fn bps(percent: Option<f64>, at: &str) -> Result<u64, String> {
    match percent {
        None => Ok(0),
        Some(p) if (0.0..=100.0).contains(&p) => Ok((p * 100.0).round() as u64),
        Some(p) => Err(format!("{at}: {p} is not a percentage between 0 and 100")),
    }
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

    /// The catalogue plus a prices file; errors name the file, the entry and the key.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        match path {
            None => Self::with_file_text(None),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("cannot read prices file {}: {e}", p.display()))?;
                Self::with_file_text(Some(&text)).map_err(|e| format!("prices file {}: {e}", p.display()))
            }
        }
    }

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
            labels,
            instances,
            models,
            regions,
            grid_mg_per_kwh,
            spot_discount_bps: bps(file.spot_discount_percent, "spot_discount_percent")?,
            commitment_discount_bps: bps(file.commitment_discount_percent, "commitment_discount_percent")?,
        })
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
        assert_eq!((p.instance_micros_per_hour, p.gpus), (32_772_600, 8));
        assert!(p.source.contains("AWS catalogue"), "{}", p.source);
    }

    #[test]
    fn unknown_types_regions_and_catalogue_rows_without_a_price_are_unpriced_not_free() {
        let book = PriceBook::catalogue_only();
        let e = book.price(&node("x9.mega", "us-east-1", "on_demand"), "?", 8, T).unwrap_err();
        assert!(e.reason.contains("no price for x9.mega in us-east-1"), "{}", e.reason);
        assert!(book.price(&node("g5.xlarge", "eu-west-1", "on_demand"), "NVIDIA A10G", 1, T).is_err());
        assert!(
            book.price(&node("p5en.48xlarge", "us-east-1", "on_demand"), "NVIDIA H200", 8, T)
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
        assert_eq!(other.instance_micros_per_hour, 32_772_600 * 70 / 100);
    }

    #[test]
    fn energy_becomes_co2e_where_the_grid_is_known() {
        let book =
            PriceBook::with_file_text(Some("[[grid]]\nregion = \"eu-west-1\"\ngrams_co2e_per_kwh = 300\n")).unwrap();
        assert_eq!(book.co2e_mg("eu-west-1", 3_600_000_000), Some(300_000), "1 kWh at 300 g/kWh");
        assert_eq!(book.co2e_mg("us-east-1", 3_600_000_000), None);
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

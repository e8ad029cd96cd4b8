//! Right-sizing (issue 24): from what a workload really used over a window (its evidence: hours seen, GPU time
//! held, peak memory, p95 SM) and the price book, what it could run on for less, and how much a month that saves.
//!
//! Four kinds, each only where the evidence covers at least `min_hours`:
//! - **cheaper GPU**: the instance type of the node's region, cheapest per GPU, whose GPU memory covers the peak
//!   with headroom (peak × 1.2 ≤ memory) and whose compute covers the busy end of its use (p95 SM × the current
//!   model's throughput ≤ 0.8 × the target's; throughput from `data/gpu_throughput.toml`);
//! - **MIG profile**: the smallest profile of its own A100/H100/H200 that fits by the same rules, priced as its
//!   compute slices' share of the GPU (`price::mig_slices`);
//! - **share**: low-use inference workloads (p95 SM ≤ 20 %) on the same GPU kind whose p95 SM adds up to at most
//!   80 % and whose peaks (with headroom) fit its memory together, on one GPU by time-slicing or MPS;
//! - **release**: a GPU held without any use (highest SM 0 %) for at least `idle_after`, with what it cost so far.
//!
//! Money is integer micro-dollars and every figure is recomputable from the prices given with it:
//! per GPU-hour = instance price per hour ÷ GPUs (× slices ÷ 7 for MIG, ÷ workloads for sharing), rounded down;
//! monthly = per GPU-hour × 730 × GPUs held on average in milli-GPUs ÷ 1000, rounded down, where GPUs held on
//! average = GPU time held ÷ time seen; saving = current monthly − proposed monthly. See docs/recommendations.md.

use std::collections::{BTreeMap, HashMap};

use gpucost_types::batch::Node;
use gpucost_types::money::Micros;
use serde::Deserialize;

use crate::book::PriceBook;

const HOUR_NS: u64 = 3_600_000_000_000;
const GIB: u64 = 1 << 30;
const PPM: u64 = 1_000_000;
/// Hours in a month: 365 × 24 ÷ 12.
pub const HOURS_PER_MONTH: u64 = 730;
/// Memory headroom: the peak × 6/5 must fit.
const MEMORY_HEADROOM: (u64, u64) = (6, 5);
/// Compute headroom: the busy end of the use may fill 80 % of the target.
const COMPUTE_HEADROOM_PPM: u64 = 800_000;
/// A workload that may share a GPU uses at most this p95 SM.
const SHARE_MAX_P95_PPM: u64 = 200_000;

const THROUGHPUT: &str = include_str!("../data/gpu_throughput.toml");

/// Relative compute per GPU model (dense FP16/BF16 tensor TFLOPS; the file names its source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throughput(HashMap<String, u64>);

impl Throughput {
    /// The shipped table.
    pub fn shipped() -> Self {
        #[derive(Deserialize)]
        struct File {
            tflops: HashMap<String, u64>,
        }
        let f: File = toml::from_str(THROUGHPUT).expect("the shipped throughput table parses (tested)");
        Self(f.tflops)
    }

    pub fn of(&self, model: &str) -> Option<u64> {
        self.0.get(model).copied()
    }
}

/// MIG profiles per parent model (`nvidia-smi mig -lgip`): name, compute slices of 7, memory GiB.
fn mig_profiles(model: &str) -> &'static [(&'static str, u64, u64)] {
    if model.contains("A100") && model.contains("40GB") {
        &[("1g.5gb", 1, 5), ("2g.10gb", 2, 10), ("3g.20gb", 3, 20), ("4g.20gb", 4, 20)]
    } else if model.contains("A100") || model.contains("H100") {
        &[("1g.10gb", 1, 10), ("2g.20gb", 2, 20), ("3g.40gb", 3, 40), ("4g.40gb", 4, 40)]
    } else if model.contains("H200") {
        &[("1g.18gb", 1, 18), ("2g.35gb", 2, 35), ("3g.71gb", 3, 71), ("4g.71gb", 4, 71)]
    } else {
        &[]
    }
}

/// What the recommendations read, and their thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The window's length (confidence is hours seen over it).
    pub window_ns: u64,
    /// Less evidence than this: no recommendation.
    pub min_seen_ns: u64,
    /// A GPU held unused this long is worth releasing.
    pub idle_after_ns: u64,
    /// Prices in force at this time.
    pub at_ns: u64,
}

/// What a workload ran on most: the GPU it would move from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub gpu_model: String,
    pub memory_total_bytes: u64,
    pub mig_profile: Option<String>,
    pub instance_type: String,
    pub region: String,
}

/// One workload's evidence over the window (the ledger's `WorkloadEvidence`, as plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `controller:<cluster>/<namespace>/<kind>/<name>`, or a workload key.
    pub group: String,
    pub controller_kind: String,
    /// Buckets seen × bucket length.
    pub seen_ns: u64,
    /// GPU time held.
    pub held_ns: u64,
    pub peak_memory_bytes: Option<u64>,
    pub peak_known_ns: u64,
    pub sm_max_ppm: u32,
    pub sm_p95_ppm: u32,
    pub on: Placement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    CheaperGpu,
    MigProfile,
    Share,
    Release,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::CheaperGpu, Kind::MigProfile, Kind::Share, Kind::Release];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CheaperGpu => "cheaper_gpu",
            Kind::MigProfile => "mig_profile",
            Kind::Share => "share",
            Kind::Release => "release",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A GPU (or a part of one) at a price: every input of the per-GPU-hour price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub instance_type: String,
    pub gpu_model: String,
    pub gpu_memory_bytes: u64,
    pub mig_profile: Option<String>,
    pub instance_micros_per_hour: Micros,
    pub gpus: u32,
    /// The share of the GPU: (MIG compute slices, of 7), or (1, workloads sharing it); (1, 1) for a whole GPU.
    pub share: (u64, u64),
    /// instance price ÷ gpus × share, rounded down at each step.
    pub micros_per_gpu_hour: Micros,
    /// Where the price came from.
    pub source: String,
}

/// One proposal for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub group: String,
    pub kind: Kind,
    /// What to do, in words.
    pub proposal: String,
    /// 0..=1e6: hours seen over the window × the share of held time whose peak memory is known (release: the
    /// first factor only).
    pub confidence_ppm: u32,
    /// GPUs held on average over the time seen, milli-GPUs.
    pub gpus_held_milli: u64,
    pub current: Offer,
    /// `None` for release.
    pub proposed: Option<Offer>,
    pub current_monthly: Micros,
    pub proposed_monthly: Micros,
    pub saving_monthly: Micros,
    /// Release: what the unused GPU time cost over the window.
    pub spent: Option<Micros>,
}

/// per GPU-hour × 730 × milli-GPUs ÷ 1000.
pub fn monthly(micros_per_gpu_hour: Micros, gpus_held_milli: u64) -> Micros {
    (u128::from(micros_per_gpu_hour) * u128::from(HOURS_PER_MONTH) * u128::from(gpus_held_milli) / 1000) as Micros
}

fn offer(book: &PriceBook, instance_type: &str, region: &str, model: &str, memory: u64, at_ns: u64) -> Option<Offer> {
    let node = Node {
        instance_type: instance_type.to_string(),
        region: region.to_string(),
        capacity_type: "on_demand".to_string(),
        cluster: String::new(),
        name: String::new(),
        zone: String::new(),
        labels: BTreeMap::new(),
    };
    let p = book.price(&node, model, 1, at_ns).ok()?;
    Some(Offer {
        instance_type: instance_type.to_string(),
        gpu_model: model.to_string(),
        gpu_memory_bytes: memory,
        mig_profile: None,
        instance_micros_per_hour: p.instance_micros_per_hour,
        gpus: p.gpus,
        share: (1, 1),
        micros_per_gpu_hour: p.instance_micros_per_hour / u64::from(p.gpus.max(1)),
        source: p.source,
    })
}

impl Offer {
    fn part(&self, share: (u64, u64), mig_profile: Option<String>, memory: u64) -> Offer {
        let whole = self.instance_micros_per_hour / u64::from(self.gpus.max(1));
        Offer {
            mig_profile,
            gpu_memory_bytes: memory,
            share,
            micros_per_gpu_hour: whole * share.0 / share.1.max(1),
            ..self.clone()
        }
    }
}

fn fits_memory(peak: u64, memory: u64) -> bool {
    u128::from(peak) * u128::from(MEMORY_HEADROOM.0) <= u128::from(memory) * u128::from(MEMORY_HEADROOM.1)
}

/// p95 × current throughput ≤ 80 % × target throughput.
fn fits_compute(p95_ppm: u32, current: u64, target: u64) -> bool {
    u128::from(p95_ppm) * u128::from(current) * u128::from(PPM)
        <= u128::from(COMPUTE_HEADROOM_PPM) * u128::from(target) * u128::from(PPM)
}

struct Priced<'a> {
    e: &'a Evidence,
    current: Offer,
    gpus_held_milli: u64,
    confidence_ppm: u32,
}

impl Priced<'_> {
    fn recommend(&self, kind: Kind, proposal: String, proposed: Offer) -> Option<Recommendation> {
        let current_monthly = monthly(self.current.micros_per_gpu_hour, self.gpus_held_milli);
        let proposed_monthly = monthly(proposed.micros_per_gpu_hour, self.gpus_held_milli);
        (proposed_monthly < current_monthly).then(|| Recommendation {
            group: self.e.group.clone(),
            kind,
            proposal,
            confidence_ppm: self.confidence_ppm,
            gpus_held_milli: self.gpus_held_milli,
            current: self.current.clone(),
            proposed: Some(proposed),
            current_monthly,
            proposed_monthly,
            saving_monthly: current_monthly - proposed_monthly,
            spent: None,
        })
    }
}

/// Every recommendation for `workloads`, in their order, per workload by kind.
pub fn recommend(
    workloads: &[Evidence],
    book: &PriceBook,
    throughput: &Throughput,
    settings: &Settings,
) -> Vec<Recommendation> {
    let priced: Vec<Priced> = workloads
        .iter()
        .filter(|e| e.seen_ns >= settings.min_seen_ns.max(1) && e.held_ns > 0)
        .filter_map(|e| {
            let current = offer(
                book,
                &e.on.instance_type,
                &e.on.region,
                &e.on.gpu_model,
                e.on.memory_total_bytes,
                settings.at_ns,
            )?;
            let current = match e.on.mig_profile.as_deref().and_then(|p| crate::price::mig_slices(p, &e.on.gpu_model)) {
                Some(share) => current.part(share, e.on.mig_profile.clone(), e.on.memory_total_bytes),
                None => current,
            };
            let seen = u128::from(e.seen_ns.min(settings.window_ns.max(1)));
            let known = u128::from(e.peak_known_ns.min(e.held_ns));
            let window = u128::from(settings.window_ns.max(1));
            let confidence_ppm = (seen * u128::from(PPM) / window * known / u128::from(e.held_ns)) as u32;
            Some(Priced {
                e,
                current,
                gpus_held_milli: (u128::from(e.held_ns) * 1000 / u128::from(e.seen_ns)) as u64,
                confidence_ppm,
            })
        })
        .collect();
    let mut out: Vec<Recommendation> = Vec::new();
    for p in &priced {
        if let Some(r) = release(p, settings) {
            out.push(r);
            continue;
        }
        out.extend(cheaper_gpu(p, book, throughput, settings));
        out.extend(mig_profile(p, throughput));
    }
    out.extend(share(&priced));
    let order: HashMap<&str, usize> = workloads.iter().enumerate().map(|(i, e)| (e.group.as_str(), i)).collect();
    out.sort_by_key(|r| (order.get(r.group.as_str()).copied(), r.kind));
    out
}

fn release(p: &Priced, settings: &Settings) -> Option<Recommendation> {
    if p.e.sm_max_ppm > 0 || p.e.seen_ns < settings.idle_after_ns {
        return None;
    }
    let current_monthly = monthly(p.current.micros_per_gpu_hour, p.gpus_held_milli);
    let spent = (u128::from(p.current.micros_per_gpu_hour) * u128::from(p.e.held_ns) / u128::from(HOUR_NS)) as Micros;
    let seen = u128::from(p.e.seen_ns.min(settings.window_ns.max(1)));
    Some(Recommendation {
        group: p.e.group.clone(),
        kind: Kind::Release,
        proposal: format!(
            "release its {} ({}): held {} h with no use",
            p.current.gpu_model,
            p.current.instance_type,
            p.e.seen_ns / HOUR_NS
        ),
        confidence_ppm: (seen * u128::from(PPM) / u128::from(settings.window_ns.max(1))) as u32,
        gpus_held_milli: p.gpus_held_milli,
        current: p.current.clone(),
        proposed: None,
        current_monthly,
        proposed_monthly: 0,
        saving_monthly: current_monthly,
        spent: Some(spent),
    })
}

fn cheaper_gpu(p: &Priced, book: &PriceBook, throughput: &Throughput, settings: &Settings) -> Option<Recommendation> {
    let peak = p.e.peak_memory_bytes?;
    let now = throughput.of(&p.e.on.gpu_model)?;
    // A MIG slice's compute is its share of the parent's.
    let now = now * p.current.share.0 / p.current.share.1.max(1);
    let best = book
        .instance_types_in(&p.e.on.region)
        .into_iter()
        .filter(|(_, c)| fits_memory(peak, u64::from(c.gpu_memory_gib) * GIB))
        .filter(|(_, c)| throughput.of(&c.gpu_model).is_some_and(|t| fits_compute(p.e.sm_p95_ppm, now, t)))
        .filter_map(|(t, c)| {
            offer(book, &t, &p.e.on.region, &c.gpu_model, u64::from(c.gpu_memory_gib) * GIB, settings.at_ns)
        })
        .min_by(|a, b| a.micros_per_gpu_hour.cmp(&b.micros_per_gpu_hour).then(a.instance_type.cmp(&b.instance_type)))?;
    let proposal = format!(
        "move to {} ({}, {} GiB): peak {} MiB, p95 SM {} %",
        best.instance_type,
        best.gpu_model,
        best.gpu_memory_bytes / GIB,
        peak >> 20,
        p.e.sm_p95_ppm / 10_000
    );
    p.recommend(Kind::CheaperGpu, proposal, best)
}

fn mig_profile(p: &Priced, throughput: &Throughput) -> Option<Recommendation> {
    let peak = p.e.peak_memory_bytes?;
    if p.e.on.mig_profile.is_some() {
        return None;
    }
    let full = throughput.of(&p.e.on.gpu_model)?;
    let (name, slices, gib) = mig_profiles(&p.e.on.gpu_model).iter().copied().find(|&(_, slices, gib)| {
        fits_memory(peak, gib * GIB) && fits_compute(p.e.sm_p95_ppm, full, full * slices / 7)
    })?;
    let proposed = p.current.part((slices, 7), Some(name.to_string()), gib * GIB);
    let proposal = format!(
        "run on a MIG {name} of its {} ({slices}/7 of the GPU, {gib} GiB): peak {} MiB, p95 SM {} %",
        p.e.on.gpu_model,
        peak >> 20,
        p.e.sm_p95_ppm / 10_000
    );
    p.recommend(Kind::MigProfile, proposal, proposed)
}

/// Low-use inference workloads packed, first fit in the order given, onto shared GPUs of their kind.
fn share(priced: &[Priced]) -> Vec<Recommendation> {
    let serving = |k: &str| matches!(k, "Deployment" | "StatefulSet" | "ReplicaSet");
    let mut kinds: BTreeMap<(&str, &str, &str), Vec<&Priced>> = BTreeMap::new();
    for p in priced {
        if serving(&p.e.controller_kind)
            && p.e.on.mig_profile.is_none()
            && p.e.sm_max_ppm > 0
            && u64::from(p.e.sm_p95_ppm) <= SHARE_MAX_P95_PPM
            && p.e.peak_memory_bytes.is_some()
            && p.gpus_held_milli <= 1000
        {
            kinds.entry((&p.e.on.region, &p.e.on.instance_type, &p.e.on.gpu_model)).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    for members in kinds.values() {
        let mut bins: Vec<(u64, u64, Vec<&Priced>)> = Vec::new();
        for &p in members {
            let sm = u64::from(p.e.sm_p95_ppm);
            let mem = p.e.peak_memory_bytes.unwrap_or(0);
            let room = p.e.on.memory_total_bytes;
            match bins.iter_mut().find(|(s, m, _)| s + sm <= COMPUTE_HEADROOM_PPM && fits_memory(m + mem, room)) {
                Some(bin) => {
                    bin.0 += sm;
                    bin.1 += mem;
                    bin.2.push(p);
                }
                None => bins.push((sm, mem, vec![p])),
            }
        }
        for (_, _, bin) in bins.into_iter().filter(|b| b.2.len() > 1) {
            let n = bin.len() as u64;
            for p in &bin {
                let others: Vec<&str> =
                    bin.iter().filter(|o| o.e.group != p.e.group).map(|o| o.e.group.as_str()).collect();
                let proposed = p.current.part((1, n), None, p.e.on.memory_total_bytes);
                let proposal = format!(
                    "share one {} with {} by time-slicing or MPS (p95 SM and peaks fit together)",
                    p.e.on.gpu_model,
                    others.join(", ")
                );
                out.extend(p.recommend(Kind::Share, proposal, proposed));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;
    const DAY: u64 = 24 * HOUR_NS;

    fn settings() -> Settings {
        Settings { window_ns: 14 * DAY, min_seen_ns: DAY, idle_after_ns: DAY, at_ns: 1_800_000_000 * 1_000_000_000 }
    }

    fn on(instance_type: &str, model: &str, gib: u64) -> Placement {
        Placement {
            gpu_model: model.into(),
            memory_total_bytes: gib * GIB,
            mig_profile: None,
            instance_type: instance_type.into(),
            region: "us-east-1".into(),
        }
    }

    fn evidence(group: &str, kind: &str, peak: u64, p95_pct: u32, hours: u64, on: Placement) -> Evidence {
        Evidence {
            group: group.into(),
            controller_kind: kind.into(),
            seen_ns: hours * HOUR_NS,
            held_ns: hours * HOUR_NS,
            peak_memory_bytes: Some(peak),
            peak_known_ns: hours * HOUR_NS,
            sm_max_ppm: (p95_pct * 10_000).max(u32::from(p95_pct > 0) * 150_000),
            sm_p95_ppm: p95_pct * 10_000,
            on,
        }
    }

    fn catalogue_per_gpu_hour(instance_type: &str) -> Micros {
        let line = include_str!("../data/aws-gpu-prices.csv")
            .lines()
            .find(|l| l.starts_with(&format!("{instance_type},")) && l.contains(",us-east-1,"))
            .expect("in the catalogue");
        let f: Vec<&str> = line.split(',').collect();
        gpucost_types::money::parse_usd(f[5]).unwrap() / f[1].parse::<u64>().unwrap()
    }

    #[test]
    fn the_shipped_throughput_table_covers_every_catalogue_model_but_the_unpriced() {
        let t = Throughput::shipped();
        for model in ["NVIDIA T4", "NVIDIA A10G", "NVIDIA L4", "NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"] {
            assert!(t.of(model).is_some(), "{model}");
        }
    }

    #[test]
    fn an_a100_pod_peaking_at_8_gb_and_10_percent_gets_a_cheaper_gpu_and_a_mig_slice_with_exact_savings() {
        let book = PriceBook::catalogue_only();
        let e = evidence(
            "controller:prod/ml/Deployment/bert",
            "Deployment",
            8 * GB,
            10,
            48,
            on("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 40),
        );
        let recs = recommend(&[e], &book, &Throughput::shipped(), &settings());
        let kinds: Vec<Kind> = recs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::CheaperGpu, Kind::MigProfile]);
        let a100 = catalogue_per_gpu_hour("p4d.24xlarge");
        let current = a100 * 730;
        // The cheapest GPU with 9.6 GB of memory and 10 % × 312 ≤ 80 % of its TFLOPS: a T4 (16 GiB, 65).
        let cheaper = &recs[0];
        assert_eq!(cheaper.proposed.as_ref().unwrap().instance_type, "g4dn.xlarge");
        assert_eq!(cheaper.gpus_held_milli, 1000);
        assert_eq!(cheaper.current_monthly, current);
        assert_eq!(cheaper.proposed_monthly, catalogue_per_gpu_hour("g4dn.xlarge") * 730);
        assert_eq!(cheaper.saving_monthly, current - catalogue_per_gpu_hour("g4dn.xlarge") * 730);
        // 9.6 GB fits the 40 GB A100's 2g.10gb (10 GiB), 2/7 of the GPU.
        let mig = &recs[1];
        assert_eq!(mig.proposed.as_ref().unwrap().mig_profile.as_deref(), Some("2g.10gb"));
        assert_eq!(mig.proposed_monthly, a100 * 2 / 7 * 730);
        assert_eq!(mig.saving_monthly, current - a100 * 2 / 7 * 730);
        assert_eq!(mig.confidence_ppm, 1_000_000 * 2 / 14);
    }

    #[test]
    fn on_an_80_gb_a100_the_same_pod_fits_a_1g_10gb_slice() {
        let book = PriceBook::catalogue_only();
        let e = evidence("g", "Deployment", 8 * GB, 10, 48, on("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80));
        let recs = recommend(&[e], &book, &Throughput::shipped(), &settings());
        let mig = recs.iter().find(|r| r.kind == Kind::MigProfile).unwrap();
        assert_eq!(mig.proposed.as_ref().unwrap().mig_profile.as_deref(), Some("1g.10gb"));
        let per_gpu = catalogue_per_gpu_hour("p4de.24xlarge");
        assert_eq!(mig.saving_monthly, per_gpu * 730 - per_gpu / 7 * 730);
        // 9 GB × 1.2 does not fit 10 GiB: the next profile.
        let e = evidence("g", "Deployment", 9 * GB, 12, 48, on("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80));
        let recs = recommend(&[e], &book, &Throughput::shipped(), &settings());
        let mig = recs.iter().find(|r| r.kind == Kind::MigProfile).unwrap();
        assert_eq!(mig.proposed.as_ref().unwrap().mig_profile.as_deref(), Some("2g.20gb"));
    }

    #[test]
    fn busy_or_big_workloads_and_thin_evidence_get_nothing() {
        let book = PriceBook::catalogue_only();
        let t = Throughput::shipped();
        let big = evidence("big", "Job", 60 * GB, 90, 48, on("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80));
        let thin = evidence("thin", "Deployment", GB, 5, 23, on("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80));
        assert_eq!(recommend(&[big, thin], &book, &t, &settings()), []);
        let mut unknown = evidence("u", "Job", GB, 5, 48, on("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80));
        unknown.peak_memory_bytes = None;
        assert_eq!(recommend(&[unknown], &book, &t, &settings()), [], "no peak: no memory to fit");
    }

    #[test]
    fn a_gpu_held_with_no_use_is_released_with_what_it_cost_so_far() {
        let book = PriceBook::catalogue_only();
        let mut idle = evidence("nb", "Notebook", GB, 0, 72, on("g5.xlarge", "NVIDIA A10G", 24));
        idle.sm_max_ppm = 0;
        let recs = recommend(&[idle], &book, &Throughput::shipped(), &settings());
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        let per_gpu = catalogue_per_gpu_hour("g5.xlarge");
        assert_eq!((r.kind, r.proposed_monthly, r.saving_monthly), (Kind::Release, 0, per_gpu * 730));
        assert_eq!(r.spent, Some(per_gpu * 72));
    }

    #[test]
    fn low_use_inference_workloads_share_a_gpu_when_their_p95_and_peaks_fit_together() {
        let book = PriceBook::catalogue_only();
        let t = Throughput::shipped();
        let a = evidence("a", "Deployment", 6 * GB, 15, 48, on("g5.xlarge", "NVIDIA A10G", 24));
        let b = evidence("b", "Deployment", 6 * GB, 20, 48, on("g5.xlarge", "NVIDIA A10G", 24));
        let c = evidence("c", "Deployment", 12 * GB, 10, 48, on("g5.xlarge", "NVIDIA A10G", 24));
        let recs = recommend(&[a, b, c], &book, &t, &settings());
        let shared: Vec<(&str, u64)> = recs
            .iter()
            .filter(|r| r.kind == Kind::Share)
            .map(|r| (r.group.as_str(), r.proposed.as_ref().unwrap().share.1))
            .collect();
        // a and b fit together (35 %, 14.4 GB with headroom); c's 14.4 GB more would not fit 24 GiB.
        assert_eq!(shared, [("a", 2), ("b", 2)]);
        let per_gpu = catalogue_per_gpu_hour("g5.xlarge");
        let r = recs.iter().find(|r| r.kind == Kind::Share).unwrap();
        assert_eq!(r.saving_monthly, per_gpu * 730 - per_gpu / 2 * 730);
    }
}

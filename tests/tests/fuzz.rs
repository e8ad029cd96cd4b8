//! The cargo-fuzz targets (fuzz/, docs/fuzzing.md), each run for a bounded time over a copy of its
//! checked-in corpus: no crash, and enough inputs run that the pass means something. The binaries are
//! built by `scripts/fuzz build` (nightly flags, its own target dir), not by cargo here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `scripts/fuzz build` puts the binaries: `GPUCOST_FUZZ_BIN_DIR`, else the release folder of
/// `GPUCOST_FUZZ_TARGET_DIR` (default `~/.cache/gpucost-fuzz-target`) for this host.
fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GPUCOST_FUZZ_BIN_DIR") {
        return d.into();
    }
    let target = std::env::var_os("GPUCOST_FUZZ_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/gpucost-fuzz-target"));
    target.join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH)).join("release")
}

/// The number after `prefix` on the last line of `log` holding it.
fn count(log: &str, prefix: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| l.trim().strip_prefix(prefix)?.split_whitespace().next()?.parse().ok())
}

fn fuzz(target: &str) {
    let bin = bin_dir().join(target);
    if !bin.exists() {
        // Under CI a missing binary is an error, never a skip.
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{} is missing: run scripts/fuzz build", bin.display());
        eprintln!("{} is missing: run scripts/fuzz build; skipping", bin.display());
        return;
    }
    let seconds: u64 = std::env::var("GPUCOST_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);

    // A copy of the corpus: what the run adds must not land in the repository.
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let seeds = repo().join("fuzz/corpus").join(target);
    for e in std::fs::read_dir(&seeds).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), corpus.join(e.file_name())).unwrap();
    }
    // Crash inputs are kept (fuzz/artifacts/ is ignored by git) to reproduce with.
    let artifacts = repo().join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts).unwrap();

    let started = std::time::Instant::now();
    let out = Command::new(&bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // As cargo fuzz runs them: Rust's statics trip ASan's one-definition-rule check falsely.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let tail: String = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    let crash = log.lines().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.to_string()));
    assert!(
        out.status.success(),
        "fuzz target {target} failed ({}); crash input: {}\nreproduce: {} <that file>\n{tail}",
        out.status,
        crash.as_deref().unwrap_or("(none written)"),
        bin.display()
    );
    let runs = count(&log, "stat::number_of_executed_units:").or_else(|| count(&log, "Done"));
    let runs = runs.unwrap_or_else(|| panic!("{target}: no run count in libFuzzer's output\n{tail}"));
    eprintln!("{target}: {runs} runs in {:?}", started.elapsed());
    assert!(runs > 1_000, "{target} ran only {runs} inputs in {seconds} s: the pass would mean little\n{tail}");
    assert!(started.elapsed() < Duration::from_secs(seconds + 60), "{target} overran its time");
}

#[test]
fn ingest_batch_validation_survives_arbitrary_protobuf_bytes() {
    fuzz("ingest_batch");
}

#[test]
fn cgroup_parsing_survives_arbitrary_text() {
    fuzz("cgroup_line");
}

#[test]
fn api_query_parsing_survives_arbitrary_query_strings() {
    fuzz("api_query");
}

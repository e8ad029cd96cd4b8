//! The dashboard in a real browser: `gpucost-collector demo` on loopback, and the Node script
//! `tests/browser/dashboard.test.mjs` driving Debian's Chromium through npm `playwright-core` (both installed
//! by `scripts/test`: Chromium from apt, playwright-core into `~/.cache/gpucost/playwright`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Proc, bin, free_port, installed_peer};

/// A running `gpucost-collector demo`: a simulated fleet streaming to a collector over loopback gRPC.
pub struct Demo {
    pub proc: Proc,
    pub http_port: u16,
    stdout: PathBuf,
    log: PathBuf,
}

impl Demo {
    /// Starts the demo with a ledger in `dir` and `args` (e.g. `--backfill 2d --nodes 8`), and waits (at most
    /// `limit`) until the history is stored and the fleet streams live.
    pub fn start(dir: &Path, args: &[&str], limit: Duration) -> Self {
        let stdout = dir.join("demo.out");
        let log = dir.join("demo.log");
        let http_port = free_port();
        let child = Command::new(bin("gpucost-collector"))
            .args(["--log-format", "json", "demo"])
            .args(args)
            .arg("--http")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--grpc")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--data-dir")
            .arg(dir.join("ledger"))
            .stdout(std::fs::File::create(&stdout).expect("demo stdout file"))
            .stderr(std::fs::File::create(&log).expect("demo log file"))
            .spawn()
            .expect("start gpucost-collector demo");
        let mut demo = Self { proc: Proc(child), http_port, stdout, log };
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = demo.proc.0.try_wait() {
                panic!("the demo exited ({status}) before it streamed live:\n{}", demo.output());
            }
            if std::fs::read_to_string(&demo.stdout).unwrap_or_default().contains("streaming live") {
                return demo;
            }
            assert!(Instant::now() < deadline, "the demo did not stream live within {limit:?}:\n{}", demo.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// What the demo printed, then the end of its log.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!("{out}\n-- last lines of its log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

/// Node.js, playwright-core and Chromium, as `scripts/test` installs them.
pub struct Browser {
    pub node: PathBuf,
    /// A folder whose `node_modules` holds `playwright-core`.
    pub playwright: PathBuf,
    pub chromium: PathBuf,
}

impl Browser {
    /// `None` when something is missing — which fails the test run when `CI=true`.
    pub fn installed() -> Option<Self> {
        // `GPUCOST_NODE`, else `node` on PATH.
        let node = std::env::var_os("GPUCOST_NODE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("node"));
        if !Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Node.js is not installed (scripts/test installs it)"
            );
            eprintln!("Node.js is not installed: run scripts/test once to install it; skipping");
            return None;
        }
        let playwright =
            installed_peer("playwright-core", "GPUCOST_PLAYWRIGHT_DIR", "playwright", "node_modules/playwright-core")?;
        // An absolute `cached` path replaces the cache folder: Debian's Chromium lives in /usr/bin.
        let chromium = installed_peer("Chromium", "GPUCOST_CHROMIUM", "/usr/bin/chromium", "")?;
        Some(Self { node, playwright, chromium })
    }

    /// Runs `script` against the collector at `url`, saving screenshots into `artifacts`; kills it after
    /// `limit`. Returns whether it passed and everything it printed.
    pub fn run(&self, script: &Path, url: &str, artifacts: &Path, limit: Duration) -> (bool, String) {
        std::fs::create_dir_all(artifacts).expect("artifacts folder");
        let out = artifacts.join("output.txt");
        let file = std::fs::File::create(&out).expect("browser test output file");
        let mut child = Proc(
            Command::new(&self.node)
                .arg(script)
                .env("GPUCOST_URL", url)
                .env("GPUCOST_PLAYWRIGHT_DIR", &self.playwright)
                .env("GPUCOST_CHROMIUM", &self.chromium)
                .env("GPUCOST_BROWSER_ARTIFACTS", artifacts)
                .env("GPUCOST_BROWSER_TIMEOUT_MS", (limit.as_millis() as u64).saturating_sub(5_000).to_string())
                .stdout(file.try_clone().expect("output file"))
                .stderr(file)
                .spawn()
                .expect("start node"),
        );
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("node status") {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        drop(child);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        match status {
            Some(s) => (s.success(), text),
            None => (false, format!("{text}\n(killed after {limit:?})")),
        }
    }
}

/// Where the browser test keeps its screenshots: `<target dir>/browser-artifacts`, next to the binaries'
/// profile folders, emptied first.
pub fn artifacts_dir() -> PathBuf {
    let profile = bin("gpucost-collector").parent().expect("profile folder").to_path_buf();
    let dir = profile.parent().unwrap_or(&profile).join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("browser artifacts folder");
    dir
}

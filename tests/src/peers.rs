//! Where `scripts/test` installed the real peers, and the rule that a missing one fails under `CI=true`.

use super::*;

/// Where `scripts/test` installed a peer: `$env`, else `~/.cache/gpucost/<cached>`. `None` when `<that>/<marker>`
/// does not exist — which fails the test run when `CI=true`: under CI a missing peer is an error, never a skip.
pub fn installed_peer(name: &str, env: &str, cached: &str, marker: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/gpucost").join(cached)
    });
    let probe = if marker.is_empty() { path.clone() } else { path.join(marker) };
    if !probe.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed at {} (scripts/test installs it)",
            path.display()
        );
        eprintln!("{name} is not installed at {}: run scripts/test once to install it; skipping", path.display());
        return None;
    }
    Some(path)
}

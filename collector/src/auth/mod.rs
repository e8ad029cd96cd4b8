//! Who may write usage and who may read or change costs. Tokens are stored hashed (SHA-256, hex) in the
//! auth file, never in clear:
//!
//! ```toml
//! [[agent]]                  # an agent token binds its holder to one cluster
//! cluster = "prod-us-east-1"
//! sha256 = "…"               # gpucost-collector hash-token < token-file
//!
//! [[api]]                    # API and dashboard tokens: `read`, or `admin` (budgets, closing periods)
//! name = "finance-reports"
//! scope = "read"
//! sha256 = "…"
//! ```
//!
//! Without an auth file that has both, the collector refuses to start unless `--insecure` says so (a
//! development mode: plain-text gRPC, no tokens), and logs a warning.

pub mod alb_oidc;

use std::collections::HashMap;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Admin,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Token hash → the cluster its agent may write.
    agents: HashMap<String, String>,
    /// Token hash → (name, scope).
    api: HashMap<String, (String, Scope)>,
    /// `--insecure`: no token needed anywhere.
    pub insecure: bool,
    /// People signed in through the ALB's OIDC (`x-amzn-oidc-data`), when configured.
    pub alb: Option<std::sync::Arc<crate::auth::alb_oidc::AlbOidc>>,
}

/// The SHA-256 of a token, hex: what the auth file stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token (send `authorization: Bearer <token>`)")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token {0:?} has read scope; this needs admin")]
    NeedsAdmin(String),
}

impl Auth {
    /// Development mode: everything open.
    pub fn open() -> Self {
        Self { insecure: true, ..Default::default() }
    }

    /// Parses the auth file (`source` names it in errors).
    pub fn from_toml(source: &str, text: &str) -> Result<Self, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
        if let Some(k) = doc.keys().find(|k| *k != "agent" && *k != "api") {
            return Err(format!("{source}: unknown table {k:?}; expected [[agent]] and [[api]]"));
        }
        let list = |key: &str| doc.get(key).and_then(toml::Value::as_array).cloned().unwrap_or_default();
        let hash = |i: usize, what: &str, t: &toml::Value| -> Result<String, String> {
            let h = t.get("sha256").and_then(toml::Value::as_str).unwrap_or_default().to_ascii_lowercase();
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "{source}: {what} {}: sha256 must be 64 hex digits (gpucost-collector hash-token < token-file)",
                    i + 1
                ));
            }
            Ok(h)
        };
        let mut auth = Auth::default();
        for (i, t) in list("agent").iter().enumerate() {
            let h = hash(i, "[[agent]]", t)?;
            let cluster = t.get("cluster").and_then(toml::Value::as_str).filter(|c| !c.is_empty());
            let cluster = cluster.ok_or_else(|| format!("{source}: [[agent]] {}: cluster is missing", i + 1))?;
            // Workload keys are `<kind>:<cluster>/…`: a cluster named `a/b` could name workloads of cluster `a`.
            if cluster.contains('/') || cluster.chars().any(char::is_control) {
                return Err(format!(
                    "{source}: [[agent]] {}: cluster {cluster:?} holds a '/' or a control character; a cluster name is one segment of a workload's key",
                    i + 1
                ));
            }
            if auth.agents.insert(h, cluster.to_string()).is_some() {
                return Err(format!("{source}: [[agent]] {}: the same token is listed twice", i + 1));
            }
        }
        for (i, t) in list("api").iter().enumerate() {
            let h = hash(i, "[[api]]", t)?;
            let name = t.get("name").and_then(toml::Value::as_str).unwrap_or("unnamed").to_string();
            let scope = match t.get("scope").and_then(toml::Value::as_str) {
                Some("read") => Scope::Read,
                Some("admin") => Scope::Admin,
                other => {
                    return Err(format!(
                        "{source}: [[api]] {}: scope must be \"read\" or \"admin\", got {other:?}",
                        i + 1
                    ));
                }
            };
            if auth.api.insert(h, (name, scope)).is_some() {
                return Err(format!("{source}: [[api]] {}: the same token is listed twice", i + 1));
            }
        }
        Ok(auth)
    }

    /// Checks that the configuration protects both ingest and the API (unless insecure).
    pub fn check_complete(&self) -> Result<(), String> {
        if self.insecure {
            return Ok(());
        }
        if self.agents.is_empty() || (self.api.is_empty() && self.alb.is_none()) {
            return Err("no agent and API tokens configured: give --auth <file> with [[agent]] and [[api]] tokens (or --alb-oidc-keys for people), or --insecure for a development setup (plain text, no tokens)".into());
        }
        Ok(())
    }

    /// The token of an `authorization: Bearer <token>` header; the scheme's name in any case (RFC 7235).
    fn bearer(header: Option<&str>) -> Result<&str, Refusal> {
        let (scheme, token) = header.ok_or(Refusal::Missing)?.trim_start().split_once(' ').ok_or(Refusal::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::Missing);
        }
        Ok(token.trim())
    }

    /// How many clusters agent tokens write: the trust zones that share the agent streams (one when insecure).
    pub fn agent_clusters(&self) -> usize {
        self.agents.values().collect::<std::collections::HashSet<_>>().len().max(1)
    }

    /// The cluster an agent with this `authorization` header may write; `None` when insecure (any).
    pub fn agent_cluster(&self, header: Option<&str>) -> Result<Option<String>, Refusal> {
        if self.insecure {
            return Ok(None);
        }
        let token = Self::bearer(header)?;
        self.agents.get(&hash_token(token)).cloned().map(Some).ok_or(Refusal::Unknown)
    }

    /// Whether an API request with this `authorization` header may do what needs `scope`.
    pub fn api(&self, header: Option<&str>, scope: Scope) -> Result<(), Refusal> {
        if self.insecure {
            return Ok(());
        }
        let token = Self::bearer(header)?;
        let (name, has) = self.api.get(&hash_token(token)).ok_or(Refusal::Unknown)?;
        if *has < scope {
            return Err(Refusal::NeedsAdmin(name.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> String {
        format!(
            "[[agent]]\ncluster = \"a\"\nsha256 = \"{}\"\n[[api]]\nname = \"viewer\"\nscope = \"read\"\nsha256 = \"{}\"\n[[api]]\nname = \"ops\"\nscope = \"admin\"\nsha256 = \"{}\"\n",
            hash_token("agent-a"),
            hash_token("reader"),
            hash_token("admin")
        )
    }

    #[test]
    fn agent_tokens_bind_a_cluster_and_api_tokens_have_scopes() {
        let a = Auth::from_toml("auth.toml", &file()).unwrap();
        a.check_complete().unwrap();
        assert_eq!(a.agent_cluster(Some("Bearer agent-a")).unwrap().as_deref(), Some("a"));
        assert_eq!(a.agent_cluster(Some("Bearer nope")), Err(Refusal::Unknown));
        assert_eq!(a.agent_cluster(None), Err(Refusal::Missing));
        assert_eq!(a.agent_cluster(Some("Basic eA==")), Err(Refusal::Missing));
        for scheme in ["BEARER", "bearer", "BeArEr"] {
            assert_eq!(a.agent_cluster(Some(&format!("{scheme} agent-a"))).unwrap().as_deref(), Some("a"), "{scheme}");
            assert!(a.api(Some(&format!("{scheme} reader")), Scope::Read).is_ok(), "{scheme}");
        }
        assert!(a.api(Some("Bearer reader"), Scope::Read).is_ok());
        assert_eq!(a.api(Some("Bearer reader"), Scope::Admin), Err(Refusal::NeedsAdmin("viewer".into())));
        assert!(a.api(Some("Bearer admin"), Scope::Admin).is_ok());
        assert_eq!(
            a.api(Some("Bearer agent-a"), Scope::Read),
            Err(Refusal::Unknown),
            "agent tokens are not API tokens"
        );
        assert!(Auth::open().api(None, Scope::Admin).is_ok());
    }

    #[test]
    fn a_bad_auth_file_or_an_unprotected_setup_is_refused_by_name() {
        let e = Auth::from_toml("auth.toml", "[[agent]]\ncluster = \"a\"\nsha256 = \"abc\"\n").unwrap_err();
        assert!(e.contains("auth.toml: [[agent]] 1: sha256 must be 64 hex digits"), "{e}");
        let e = Auth::from_toml("auth.toml", &format!("[[api]]\nscope = \"root\"\nsha256 = \"{}\"\n", hash_token("x")))
            .unwrap_err();
        assert!(e.contains("scope must be \"read\" or \"admin\""), "{e}");
        assert!(Auth::default().check_complete().unwrap_err().contains("--insecure"));
        let e =
            Auth::from_toml("auth.toml", &format!("[[agent]]\ncluster = \"a/b\"\nsha256 = \"{}\"\n", hash_token("x")))
                .unwrap_err();
        assert!(e.contains("cluster \"a/b\" holds a '/'"), "{e}");
        assert_eq!(hash_token("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }
}

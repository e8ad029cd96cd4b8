//! The Backstage catalog REST API: `GET /api/catalog/entities/by-query` for Groups, Users, Systems,
//! Components and Resources, cursor-paginated, with a bearer token (Backstage's static external access
//! tokens, or any token the backend accepts). Each entity comes back in its catalog JSON form, which the
//! same `Catalog` reader as the `catalog-info.yaml` files understands (JSON is YAML).
//!
//! The last good catalog is kept in the ledger (`shared_catalogs`, source [`SOURCE`]) after every successful
//! fetch, so that a collector that starts while Backstage is down — or a `reattribute` run without Backstage —
//! still knows the owners, and so that collectors sharing a database take one copy instead of each asking.

use std::time::Duration;

use serde_json::Value;

use gpucost_ledger::Ledger;
use gpucost_rules::catalog::Catalog;

/// The catalog source under which the ledger keeps the last good Backstage catalog.
pub const SOURCE: &str = "backstage";

const KINDS: [&str; 5] = ["group", "user", "system", "component", "resource"];
/// More pages than any catalog has; a cursor loop stops here.
const MAX_PAGES: usize = 10_000;

/// Reads the whole catalog from Backstage at `base` (blocking).
pub fn fetch(base: &str, token: Option<&str>, timeout: Duration) -> Result<Catalog, String> {
    let base = base.trim_end_matches('/');
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let mut catalog = Catalog::default();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = agent.get(&format!("{base}/api/catalog/entities/by-query"));
        match &cursor {
            Some(c) => req = req.query("cursor", c),
            None => {
                for k in KINDS {
                    req = req.query("filter", format!("kind={k}"));
                }
                req = req.query("limit", "500");
            }
        }
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| format!("Backstage at {base}: {e}"))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| format!("Backstage at {base}: HTTP {status}, unreadable answer: {e}"))?;
        if status != 200 {
            let msg = body["error"]["message"].as_str().unwrap_or("(no message)");
            return Err(format!("Backstage at {base}: HTTP {status}: {msg}"));
        }
        for (i, item) in body["items"].as_array().into_iter().flatten().enumerate() {
            catalog.add_yaml(&format!("Backstage item {i}"), &item.to_string())?;
        }
        cursor = body["pageInfo"]["nextCursor"].as_str().map(String::from);
        if cursor.is_none() {
            return Ok(catalog);
        }
    }
    Err(format!("Backstage at {base}: more than {MAX_PAGES} pages"))
}

/// Keeps `catalog`, fetched at `fetched_at_ns`, in the ledger as the last good copy.
pub fn keep(ledger: &dyn Ledger, catalog: &Catalog, fetched_at_ns: u64) -> Result<(), String> {
    let json = serde_json::to_string(catalog).map_err(|e| e.to_string())?;
    ledger.put_shared_catalog(SOURCE, &json, fetched_at_ns).map_err(|e| e.to_string())
}

/// The last good copy the ledger keeps, and when it was fetched from Backstage; `None` when there is none.
pub fn kept(ledger: &dyn Ledger) -> Result<Option<(Catalog, u64)>, String> {
    let Some((json, at)) = ledger.shared_catalog(SOURCE).map_err(|e| format!("reading the kept catalog: {e}"))? else {
        return Ok(None);
    };
    let catalog =
        serde_json::from_str(&json).map_err(|e| format!("the catalog kept in the ledger does not read: {e}"))?;
    Ok(Some((catalog, at)))
}

/// Why a fetched catalog must not replace `last_good`: an empty answer where the last good copy named
/// owners is a Backstage that lost its catalog (a fresh database, a failed ingestion), not an organisation
/// that owns nothing; taking it would make every workload unattributed.
pub fn suspect(fetched: &Catalog, last_good: Option<&Catalog>) -> Option<String> {
    let last = last_good.filter(|c| !c.is_empty())?;
    fetched.is_empty().then(|| {
        format!(
            "Backstage answered an empty catalog where the last good copy has {} groups and {} components; \
             refused as suspect",
            last.groups.len(),
            last.components.len()
        )
    })
}

/// Where the Backstage catalog is synced from, and how often.
#[derive(Debug, Clone)]
pub struct BackstageConfig {
    pub url: String,
    pub token: Option<String>,
    pub every: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_ledger::prelude::*;

    #[test]
    fn an_empty_answer_is_suspect_only_after_a_catalog_that_named_owners() {
        let example = Catalog::example();
        let empty = Catalog::default();
        assert!(suspect(&empty, Some(&example)).is_some_and(|e| e.contains("10 groups")));
        assert_eq!(suspect(&empty, Some(&empty)), None);
        assert_eq!(suspect(&empty, None), None);
        assert_eq!(suspect(&example, Some(&example)), None);
    }

    #[test]
    fn the_kept_copy_reads_back_as_it_was_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = gpucost_ledger::SqliteLedger::open(&dir.path().join("l.db"), 3_600_000_000_000, u64::MAX).unwrap();
        assert_eq!(kept(&ledger).unwrap(), None);
        keep(&ledger, &Catalog::example(), 42).unwrap();
        assert_eq!(kept(&ledger).unwrap(), Some((Catalog::example(), 42)));
        ledger.put_shared_catalog(SOURCE, "{", 43).unwrap();
        assert!(kept(&ledger).unwrap_err().contains("does not read"));
    }
}

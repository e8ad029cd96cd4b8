//! The Backstage catalog REST API: `GET /api/catalog/entities/by-query` for Groups, Users, Systems,
//! Components and Resources, cursor-paginated, with a bearer token (Backstage's static external access
//! tokens, or any token the backend accepts). Each entity comes back in its catalog JSON form, which the
//! same `Catalog` reader as the `catalog-info.yaml` files understands (JSON is YAML).

use std::time::Duration;

use serde_json::Value;

use super::catalog::Catalog;

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

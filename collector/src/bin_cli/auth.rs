//! Tokens: the collector's auth settings, and `hash-token`.

use std::sync::Arc;

use anyhow::Context;

use super::ledger_args::LedgerArgs;

impl LedgerArgs {
    /// The tokens from `--auth`, or an open collector with `--insecure` (always for the local demo); refuses
    /// an unprotected setup otherwise.
    pub(crate) fn auth_config(&self, demo: bool) -> anyhow::Result<gpucost_collector::auth::Auth> {
        use gpucost_collector::auth::Auth;
        let mut auth = match &self.auth {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading --auth {}", path.display()))?;
                Auth::from_toml(&path.display().to_string(), &text).map_err(anyhow::Error::msg)?
            }
            None => Auth::default(),
        };
        if let Some(keys) = &self.alb_oidc_keys {
            auth.alb = Some(Arc::new(gpucost_collector::auth::alb_oidc::AlbOidc::new(
                keys,
                self.alb_arn.as_deref().unwrap_or_default(),
                self.alb_oidc_admins.clone(),
            )));
        }
        auth.insecure = self.insecure || (demo && self.auth.is_none());
        auth.check_complete().map_err(anyhow::Error::msg)?;
        if auth.insecure && !demo {
            // Logged with the binary's target, as the other CLI messages.
            tracing::warn!(
                target: "gpucost_collector",
                "--insecure: agents and API clients are not authenticated; use --auth outside development"
            );
        }
        Ok(auth)
    }
}

/// `hash-token`: prints the SHA-256 of the token on standard input.
pub(crate) fn hash_token() -> anyhow::Result<()> {
    let mut token = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut token).context("reading the token from stdin")?;
    anyhow::ensure!(token.trim().len() >= 16, "a token needs at least 16 characters");
    println!("{}", gpucost_collector::auth::hash_token(&token));
    Ok(())
}

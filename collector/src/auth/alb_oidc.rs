//! Identity from an AWS Application Load Balancer's OIDC authentication: the ALB signs the user's claims as
//! a JWT (ES256) in the `x-amzn-oidc-data` header; its public key is served per key id at
//! `https://public-keys.auth.elb.<region>.amazonaws.com/<kid>`. The collector checks the signature, the
//! signer (the ALB's ARN) and the expiry, and lets the user read (or administer, when listed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug)]
pub struct AlbOidc {
    /// Where the ALB's public keys are, e.g. `https://public-keys.auth.elb.us-east-1.amazonaws.com`.
    pub key_url: String,
    /// The ALB whose signature is accepted (`signer` in the JWT header); any when empty.
    pub alb_arn: String,
    /// Users (their `email` claim) with admin scope; everyone else signed in reads.
    pub admins: Vec<String>,
    keys: Mutex<HashMap<String, Vec<u8>>>,
    /// Key ids whose fetch failed, and when: anyone can send a made-up key id, so a failure is remembered
    /// ([`FAILED_FOR`]) and only a few fetches may fail a minute ([`FAILURES_PER_MINUTE`]); at most
    /// [`FAILED_KEPT`] are kept.
    failed: Mutex<HashMap<String, Instant>>,
}

/// How long a key id whose fetch failed is refused without asking the key server again.
const FAILED_FOR: Duration = Duration::from_secs(300);
/// Fetches that may fail in a minute; past that, unknown key ids are refused without a fetch until it passes.
const FAILURES_PER_MINUTE: usize = 10;
/// Most failed key ids remembered.
const FAILED_KEPT: usize = 1024;

/// Who the ALB says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub admin: bool,
}

fn b64(part: &str) -> Result<Vec<u8>, String> {
    // ALB pads its base64url with `=`; JWT does not.
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|e| format!("not base64url: {e}"))
}

impl AlbOidc {
    pub fn new(key_url: &str, alb_arn: &str, admins: Vec<String>) -> Self {
        Self {
            key_url: key_url.trim_end_matches('/').to_string(),
            alb_arn: alb_arn.to_string(),
            admins,
            keys: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a fetch of `kid` may be tried now: not failed lately, and not too many failures this minute.
    fn may_fetch(&self, kid: &str, now: Instant) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, at| now.duration_since(*at) < FAILED_FOR);
        let last_minute = failed.values().filter(|at| now.duration_since(**at) < Duration::from_secs(60)).count();
        !failed.contains_key(kid) && last_minute < FAILURES_PER_MINUTE
    }

    fn fetch_failed(&self, kid: &str, now: Instant) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.len() >= FAILED_KEPT
            && let Some(oldest) = failed.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
        {
            failed.remove(&oldest);
        }
        failed.insert(kid.to_string(), now);
    }

    /// The key id's P-256 public key (the uncompressed point), fetched once and kept; a failed fetch is not
    /// tried again for a while (see `failed`).
    fn key(&self, kid: &str) -> Result<Vec<u8>, String> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(kid) {
            return Ok(k.clone());
        }
        if kid.is_empty() || !kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("key id {kid:?} is not a key id"));
        }
        // The caller learns that the key is not the ALB's, never where keys come from or why (that is logged).
        let unknown = || format!("key id {kid:?} is not one of the ALB's keys");
        let now = Instant::now();
        if !self.may_fetch(kid, now) {
            return Err(unknown());
        }
        let point = self.fetch(kid).map_err(|e| {
            tracing::warn!(kid, error = %e, "could not fetch an ALB public key");
            self.fetch_failed(kid, now);
            unknown()
        })?;
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(kid.to_string(), point.clone());
        Ok(point)
    }

    /// Fetches the key id's public key from the key server.
    fn fetch(&self, kid: &str) -> Result<Vec<u8>, String> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
        let url = format!("{}/{kid}", self.key_url);
        let pem = agent
            .get(&url)
            .call()
            .map_err(|e| format!("fetching the ALB key {url}: {e}"))?
            .into_body()
            .read_to_string()
            .map_err(|e| format!("reading the ALB key {url}: {e}"))?;
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("the ALB key {url} is not a PEM public key: {e}"))?;
        // An EC P-256 SubjectPublicKeyInfo ends with the 65-byte uncompressed point.
        let der = spki.as_ref();
        let point = der.get(der.len().saturating_sub(65)..).filter(|p| p.len() == 65 && p[0] == 4);
        Ok(point.ok_or_else(|| format!("the ALB key {url} is not a P-256 key"))?.to_vec())
    }

    /// Checks the `x-amzn-oidc-data` JWT at `now_s`: signature (ES256, the ALB's key), signer, expiry.
    pub fn verify(&self, jwt: &str, now_s: u64) -> Result<User, String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("x-amzn-oidc-data is not a JWT".into());
        };
        let header: serde_json::Value =
            serde_json::from_slice(&b64(h)?).map_err(|e| format!("JWT header is not JSON: {e}"))?;
        if header["alg"] != "ES256" {
            return Err(format!("JWT alg {} is not ES256", header["alg"]));
        }
        if !self.alb_arn.is_empty() && header["signer"] != self.alb_arn.as_str() {
            return Err(format!("JWT signer {} is not this collector's ALB", header["signer"]));
        }
        let key = self.key(header["kid"].as_str().unwrap_or_default())?;
        let signed = &jwt[..h.len() + 1 + p.len()];
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, key)
            .verify(signed.as_bytes(), &b64(s)?)
            .map_err(|_| "the JWT's signature does not verify with the ALB's key".to_string())?;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64(p)?).map_err(|e| format!("JWT claims are not JSON: {e}"))?;
        let exp = claims["exp"].as_u64().ok_or("the JWT has no exp")?;
        if exp <= now_s {
            return Err("the JWT has expired".into());
        }
        let name = claims["email"].as_str().or(claims["sub"].as_str()).unwrap_or("unknown").to_string();
        let admin = self.admins.iter().any(|a| a.eq_ignore_ascii_case(&name));
        Ok(User { name, admin })
    }
}

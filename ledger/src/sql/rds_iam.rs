//! Amazon RDS / Aurora IAM database authentication: instead of a password, a token (a SigV4-presigned
//! `connect` request for service `rds-db`, valid 15 minutes) made from the collector's AWS credentials,
//! e.g. its ECS task role. A fresh token is made for every new connection, so expiry never matters to a
//! connection already open. RDS takes IAM tokens over TLS only.
//!
//! `postgres://gpucost_app@mydb.xyz.eu-west-1.rds.amazonaws.com:5432/gpucost?sslmode=verify-full&sslrootcert=/etc/rds-ca.pem&auth=rds-iam`
//! (`region=` when the host name does not say it and `AWS_REGION` is unset).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// AWS credentials (a session token with temporary ones).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Percent-encoding as SigV4 wants it: everything but `A-Z a-z 0-9 - _ . ~`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` for `unix_s`.
fn amz_date(unix_s: u64) -> String {
    let (y, m, d) = gpucost_types::period::civil_from_days((unix_s / 86_400) as i64);
    let s = unix_s % 86_400;
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The token for `user` on `host:port` in `region`, signed at `unix_s` (what `aws rds
/// generate-db-auth-token` prints, in the same parameter order).
pub fn auth_token(host: &str, port: u16, user: &str, region: &str, creds: &Credentials, unix_s: u64) -> String {
    let date_time = amz_date(unix_s);
    let date = &date_time[..8];
    let scope = format!("{date}/{region}/rds-db/aws4_request");
    let mut query = vec![
        ("Action", "connect".to_string()),
        ("DBUser", user.to_string()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_string()),
        ("X-Amz-Credential", format!("{}/{scope}", creds.access_key_id)),
        ("X-Amz-Date", date_time.clone()),
        ("X-Amz-Expires", "900".to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ];
    if let Some(t) = &creds.session_token {
        query.push(("X-Amz-Security-Token", t.clone()));
    }
    let render = |pairs: &[(&str, String)]| {
        pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
    };
    let mut sorted = query.clone();
    sorted.sort();
    let empty_payload = hex::encode(Sha256::digest(b""));
    let canonical = format!("GET\n/\n{}\nhost:{host}:{port}\n\nhost\n{empty_payload}", render(&sorted));
    let to_sign = format!("AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}", hex::encode(Sha256::digest(canonical)));
    let key = ["rds-db", "aws4_request"]
        .iter()
        .fold(hmac(hmac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date).as_slice(), region), |k, s| {
            hmac(&k, s)
        });
    let signature = hex::encode(hmac(&key, &to_sign));
    query.push(("X-Amz-Signature", signature));
    format!("{host}:{port}/?{}", render(&query))
}

/// The region of an RDS endpoint (`<name>.<id>.<region>.rds.amazonaws.com`), if its name says it.
pub fn region_of_host(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| *l == "rds")?;
    (at >= 1 && labels.get(at + 1) == Some(&"amazonaws")).then(|| labels[at - 1])
}

/// Where RDS IAM tokens get their AWS credentials: the process's environment unless the binary set a source
/// (the collector sets the AWS SDK's default chain, so that the ledger needs no AWS SDK).
type CredentialSource = dyn Fn() -> Result<Credentials, String> + Send + Sync;
static SOURCE: std::sync::OnceLock<Box<CredentialSource>> = std::sync::OnceLock::new();

/// Sets where credentials come from, once, before any ledger is opened; false when one was already set.
pub fn set_credential_source(source: Box<CredentialSource>) -> bool {
    SOURCE.set(source).is_ok()
}

/// The credentials to sign a token with: from the source set, else the environment.
pub fn credentials() -> Result<Credentials, String> {
    match SOURCE.get() {
        Some(source) => source(),
        None => from_environment(),
    }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
pub fn from_environment() -> Result<Credentials, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Ok(Credentials { access_key_id, secret_access_key, session_token: var("AWS_SESSION_TOKEN") })
        }
        _ => Err("no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (and no other \
                  source is configured: a collector built without the `aws` feature reads the environment only)"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_rendered_as_sigv4_wants_it() {
        // 2026-11-29T12:30:45Z
        assert_eq!(amz_date(1_795_955_445), "20261129T123045Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }

    #[test]
    fn the_region_is_read_from_an_rds_endpoint() {
        assert_eq!(region_of_host("mydb.abc123.eu-west-1.rds.amazonaws.com"), Some("eu-west-1"));
        assert_eq!(region_of_host("c.cluster-ro-abc.us-east-2.rds.amazonaws.com"), Some("us-east-2"));
        assert_eq!(region_of_host("127.0.0.1"), None);
        assert_eq!(region_of_host("db.internal"), None);
    }

    #[test]
    fn a_token_carries_user_scope_expiry_and_a_session_token() {
        let c = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "SECRETVALUE".into(),
            session_token: Some("t/+=".into()),
        };
        let t = auth_token("h.example", 5432, "app", "eu-west-1", &c, 1_795_955_445);
        assert!(t.starts_with("h.example:5432/?Action=connect&DBUser=app&"), "{t}");
        assert!(t.contains("X-Amz-Credential=AKID%2F20261129%2Feu-west-1%2Frds-db%2Faws4_request"), "{t}");
        assert!(t.contains("X-Amz-Expires=900") && t.contains("X-Amz-Security-Token=t%2F%2B%3D"), "{t}");
        let other = auth_token("h.example", 5432, "app", "eu-west-1", &c, 1_795_955_446);
        assert_ne!(t, other, "signed anew each second");
        assert!(!format!("{c:?}").contains("SECRETVALUE"), "no secret in Debug");
        assert!(!t.contains("SECRETVALUE"));
    }
}

//! The label keys a collector asks its agents to keep (`Ingest.Report`): the pod and namespace label keys
//! its catalog's selectors and owner rules read, so that a Backstage component selected on a key outside an
//! agent's `--label-allow` still matches, without every node's flags edited by hand.
//!
//! Both sides hold the announcement to the same bounds, since what leaves a node and what the collector
//! stores per workload grows with it: only keys (never values), each a Kubernetes label key, at most
//! [`MAX_LABEL_KEYS`] of at most [`MAX_LABEL_KEY_BYTES`] bytes. The collector announces within them; an
//! agent ignores what a collector sends beyond them.

/// The response header a collector answers a stream with: the keys, comma-separated.
pub const LABEL_KEYS_HEADER: &str = "gpucost-label-keys";

/// The most keys a collector announces, and an agent takes.
pub const MAX_LABEL_KEYS: usize = 32;

/// The longest key announced or taken, in bytes (a Kubernetes label key may have up to 317: a 253-byte
/// prefix, `/` and a 63-byte name; catalog keys are far shorter).
pub const MAX_LABEL_KEY_BYTES: usize = 128;

/// Keys within the bounds, in the order given, each once; and the ones left out, with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bounded {
    pub keys: Vec<String>,
    pub refused: Vec<(String, &'static str)>,
}

/// Holds `keys` to the bounds: valid Kubernetes label keys of at most [`MAX_LABEL_KEY_BYTES`] bytes, the
/// first [`MAX_LABEL_KEYS`] of them.
pub fn bound<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Bounded {
    let mut out = Bounded::default();
    for key in keys {
        let key = key.into();
        let why = if out.keys.contains(&key) {
            continue;
        } else if key.len() > MAX_LABEL_KEY_BYTES {
            Some("longer than 128 bytes")
        } else if let Err(why) = check_label_key(&key) {
            Some(why)
        } else if out.keys.len() == MAX_LABEL_KEYS {
            Some("more than 32 keys")
        } else {
            None
        };
        match why {
            Some(why) => out.refused.push((key, why)),
            None => out.keys.push(key),
        }
    }
    out
}

/// The keys a `gpucost-label-keys` header value names, held to the bounds.
pub fn parse_header(value: &str) -> Bounded {
    bound(value.split(',').map(str::trim).filter(|k| !k.is_empty()))
}

/// Whether `key` is a Kubernetes label key: an optional DNS subdomain prefix and `/`, then a name of 1 to 63
/// characters, alphanumerics with `-`, `_` or `.` inside.
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        return Err("its name is not 1 to 63 characters");
    }
    if !alnum(name.chars().next())
        || !alnum(name.chars().last())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("its name is not alphanumerics with '-', '_' or '.' inside");
    }
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("its prefix is not a DNS subdomain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_label_keys_pass_and_anything_else_is_refused_with_why() {
        for ok in ["tier", "backstage.io/kubernetes-id", "app.kubernetes.io/name", "a", "x_y.z-1", "k8s.io/A_b"] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-tier", "tier-", "ti er", "tier=gold", "Backstage.io/owner", "a//b", "/name", "io/", "*"] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        assert!(check_label_key(&"n".repeat(64)).is_err());
    }

    #[test]
    fn at_most_32_keys_of_at_most_128_bytes_each_once_in_order() {
        let long = format!("{}.{}/name", "a".repeat(61), "b".repeat(61));
        assert_eq!(long.len(), 128);
        let too_long = format!("{}.{}/name", "a".repeat(62), "b".repeat(61));
        let many: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let b = bound(
            ["tier".to_string(), "tier".into(), long.clone(), too_long.clone(), "bad key".into()]
                .into_iter()
                .chain(many),
        );
        assert_eq!(b.keys.len(), MAX_LABEL_KEYS);
        assert_eq!(&b.keys[..3], ["tier".to_string(), long, "k0".into()]);
        assert_eq!(b.keys.last().map(String::as_str), Some("k29"));
        assert_eq!(b.refused[0], (too_long, "longer than 128 bytes"));
        assert_eq!(b.refused[1].0, "bad key");
        assert_eq!(b.refused[2], ("k30".to_string(), "more than 32 keys"));
        assert_eq!(b.refused.len(), 2 + 10);
    }

    #[test]
    fn a_header_value_is_read_as_comma_separated_keys() {
        assert_eq!(parse_header(" tier, backstage.io/owner ,,").keys, ["tier", "backstage.io/owner"]);
        assert_eq!(parse_header(""), Bounded::default());
    }
}

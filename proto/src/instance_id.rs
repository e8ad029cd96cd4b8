//! What an EC2 instance id looks like, part of the wire contract (`NodeInfo.instance_id`): "i-" and 8 (older
//! instances) or 17 lowercase hex digits. The agent sends nothing else there; the collector refuses anything
//! else.

/// Whether `s` is an EC2 instance id.
pub fn is_ec2_instance_id(s: &str) -> bool {
    let Some(hex) = s.strip_prefix("i-") else { return false };
    matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_i_and_8_or_17_lowercase_hex_digits() {
        assert!(is_ec2_instance_id("i-0123456789abcdef0"));
        assert!(is_ec2_instance_id("i-1a2b3c4d"));
        for bad in ["", "i-", "i-0123456789ABCDEF0", "i-0123456789abcdef", "i-0123456789abcdeg0", "0123456789abcdef0"] {
            assert!(!is_ec2_instance_id(bad), "{bad:?}");
        }
    }
}

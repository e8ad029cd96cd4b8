//! The EC2 instance a node runs on, by its id: from the Node's `spec.providerID` (`aws:///<zone>/i-…`, as the
//! AWS cloud provider and EKS set it) or from instance metadata (`imds`). The collector matches bill lines to
//! nodes by it. Pure.

pub use gpucost_proto::instance_id::is_ec2_instance_id;

/// The instance id in a Node's `spec.providerID`: `aws:///us-east-1a/i-0abc…` (or `aws://us-east-1a/i-…`);
/// `None` for another provider's, or one that does not end in an instance id.
pub fn from_provider_id(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    is_ec2_instance_id(id).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_id_is_read_from_an_aws_provider_id_only() {
        assert_eq!(from_provider_id("aws:///us-east-1a/i-0abcdef1234567890").as_deref(), Some("i-0abcdef1234567890"));
        assert_eq!(from_provider_id("aws://us-west-2b/i-1a2b3c4d").as_deref(), Some("i-1a2b3c4d"));
        assert_eq!(from_provider_id("aws:///us-east-1a/fargate-ip-10-0-0-1"), None);
        assert_eq!(from_provider_id("gce://project/us-central1-a/gke-node-1"), None);
        assert_eq!(from_provider_id("kind://docker/kind/kind-worker"), None);
        assert_eq!(from_provider_id(""), None);
    }
}

//! What a bill line says about an EC2 instance, the same way for both schemas: its instance type from the
//! usage type (`BoxUsage:p4d.24xlarge`, `SpotUsage:g5.xlarge`, `USE1-DedicatedUsage:p5.48xlarge`) when no
//! column names it, and its instance id when the resource is given as an ARN, so bill lines match nodes by id.

/// The instance type in an instance-usage `usage_type`, or empty.
pub fn instance_type_of_usage(usage_type: &str) -> String {
    match usage_type.split_once(':') {
        Some((kind, t)) if kind.ends_with("Usage") && t.contains('.') => t.to_string(),
        _ => String::new(),
    }
}

/// `arn:aws:ec2:<region>:<account>:instance/i-…` → `i-…`; any other resource id unchanged.
pub fn resource_id(raw: &str) -> String {
    match raw.strip_prefix("arn:").and_then(|_| raw.rsplit_once(":instance/")) {
        Some((_, id)) if id.starts_with("i-") => id.to_string(),
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types_and_ids_are_read_from_usage_types_and_arns() {
        assert_eq!(instance_type_of_usage("BoxUsage:p4d.24xlarge"), "p4d.24xlarge");
        assert_eq!(instance_type_of_usage("USE2-SpotUsage:g5.xlarge"), "g5.xlarge");
        assert_eq!(instance_type_of_usage("EBS:VolumeUsage.gp3"), "");
        assert_eq!(instance_type_of_usage("DataTransfer-Out-Bytes"), "");
        assert_eq!(resource_id("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"), "i-0abc");
        assert_eq!(resource_id("i-0abc"), "i-0abc");
        assert_eq!(resource_id("arn:aws:s3:::bucket"), "arn:aws:s3:::bucket");
    }
}

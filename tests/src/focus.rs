//! The FinOps Foundation's focus-validator, run on a FOCUS file.

use super::*;

/// Validates a FOCUS file with the FinOps Foundation's focus-validator (`tests/focus/validate.sh`, in the
/// venv `scripts/test` installs) and the applicability criteria gpucost's export satisfies; panics with the
/// validator's report when a rule fails. Skips (a failure under `CI=true`) when it is not installed.
pub fn assert_focus_valid(file: &Path) {
    let Some(venv) = installed_peer("focus-validator", "GPUCOST_FOCUS_VENV", "focus-venv", "bin/focus-validator")
    else {
        return;
    };
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("focus/validate.sh"))
        .arg(file)
        .env("GPUCOST_FOCUS_VENV", &venv)
        .env(
            "FOCUS_CRITERIA",
            "ACCOUNT_NAMING_SUPPORTED,AVAILABILITY_ZONE_SUPPORTED,MULTIPLE_PRICING_CATEGORIES_SUPPORTED,\
             MULTIPLE_SUB_ACCOUNT_TYPES_SUPPORTED,MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED,NEGOTIATED_PRICING_SUPPORTED,\
             PUBLIC_PRICE_LIST_SUPPORTED,USAGE_MEASUREMENT_SUPPORTED,UNIT_PRICING_SUPPORTED,SUB_ACCOUNT_SUPPORTED,\
             BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED,RESOURCE_TYPE_ASSIGNMENT_SUPPORTED,\
             PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED,REGION_SUPPORTED,TAGGING_SUPPORTED",
        )
        .output()
        .expect("run focus-validator");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "focus-validator:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("FOCUS VALIDATION PASSED"), "{report}");
}

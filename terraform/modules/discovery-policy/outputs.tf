output "json" {
  description = "The discovery policy document (JSON), for aws_iam_policy or aws_iam_role_policy."
  value       = data.aws_iam_policy_document.discovery.json
}

output "actions" {
  description = "Every action the policy allows, for documentation and tests."
  value = sort(distinct(flatten([
    for s in jsondecode(data.aws_iam_policy_document.discovery.json).Statement : s.Action
  ])))
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "The collector's ECS service."
  value       = aws_ecs_service.collector.name
}

output "task_family" {
  description = "The collector's task definition family."
  value       = aws_ecs_task_definition.collector.family
}

output "container_name" {
  description = "The collector's container name in the task definition."
  value       = local.container_name
}

output "task_definition_arn" {
  description = "The task definition revision Terraform registered (the first deployment)."
  value       = aws_ecs_task_definition.collector.arn
}

output "execution_role_arn" {
  description = "Execution role (image pull, logs, secrets)."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "Task role (discovery, ledger file system)."
  value       = aws_iam_role.task.arn
}

output "task_security_group_id" {
  description = "Security group of the collector tasks."
  value       = aws_security_group.tasks.id
}

output "log_group_name" {
  description = "CloudWatch log group of the collector."
  value       = aws_cloudwatch_log_group.collector.name
}

output "kms_key_arn" {
  description = "KMS key of the collector's logs, database or file system, secrets and backups."
  value       = module.key.arn
}

output "ledger" {
  description = "The ledger layout: postgres or sqlite-efs."
  value       = var.ledger
}

output "db_secret_arn" {
  description = "Secrets Manager secret holding the ledger database's credentials and URL (postgres only)."
  value       = local.postgres ? aws_secretsmanager_secret.db[0].arn : null
}

output "db_endpoint" {
  description = "The ledger database's address (postgres only)."
  value       = local.postgres ? aws_db_instance.ledger[0].address : null
}

output "efs_file_system_id" {
  description = "The ledger file system (sqlite-efs only)."
  value       = local.sqlite_efs ? aws_efs_file_system.ledger[0].id : null
}

output "efs_access_point_id" {
  description = "The ledger file system's access point (sqlite-efs only)."
  value       = local.sqlite_efs ? aws_efs_access_point.ledger[0].id : null
}

output "backup_vault_name" {
  description = "AWS Backup vault of the ledger file system (sqlite-efs only)."
  value       = local.sqlite_efs ? aws_backup_vault.ledger[0].name : null
}

output "tokens_secret_arn" {
  description = "Secrets Manager secret with the agent and API tokens in clear."
  value       = aws_secretsmanager_secret.tokens.arn
}

output "auth_secret_arn" {
  description = "Secrets Manager secret with the collector's auth file (token hashes), injected as GPUCOST_AUTH_TOML."
  value       = aws_secretsmanager_secret.auth.arn
}

output "grpc_tls_secret_arn" {
  description = "Secrets Manager secret with the tasks' gRPC certificate and key (keys cert, key)."
  value       = aws_secretsmanager_secret.grpc_tls.arn
}

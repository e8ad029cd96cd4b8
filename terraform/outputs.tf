output "collector_api_url" {
  description = "The collector's HTTP API and dashboard (point a DNS name of the certificate at alb_dns_name)."
  value       = "https://${module.networking.alb_dns_name}/"
}

output "agent_collector_endpoint" {
  description = "What agents dial (--collector / GPUCOST_COLLECTOR), as host:port of the TLS gRPC listener. Use the certificate's DNS name in place of the load balancer's."
  value       = "${module.networking.alb_dns_name}:${module.networking.grpc_listener_port}"
}

output "alb_dns_name" {
  description = "DNS name of the collector's load balancer."
  value       = module.networking.alb_dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone id of the load balancer (alias records)."
  value       = module.networking.alb_zone_id
}

output "vpc_id" {
  description = "The VPC."
  value       = module.networking.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets."
  value       = module.networking.private_subnet_ids
}

output "eks_cluster_name" {
  description = "The EKS cluster (agents' --cluster)."
  value       = module.eks.cluster_name
}

output "eks_cluster_endpoint" {
  description = "The Kubernetes API endpoint."
  value       = module.eks.cluster_endpoint
}

output "eks_gpu_node_groups" {
  description = "GPU node groups."
  value       = module.eks.gpu_node_groups
}

output "agent_role_arn" {
  description = "IAM role of the agent's pods (EKS Pod Identity)."
  value       = module.eks.agent_role_arn
}

output "eks_collector_role_arn" {
  description = "IAM role of a collector on EKS (EKS Pod Identity, discovery)."
  value       = module.eks.collector_role_arn
}

output "ecr_repositories" {
  description = "ECR repository URLs by image name."
  value       = { for name, r in aws_ecr_repository.image : name => r.repository_url }
}

output "ledger" {
  description = "The collector's ledger layout."
  value       = module.ecs.ledger
}

output "db_secret_arn" {
  description = "Secrets Manager secret with the ledger database's credentials and URL (postgres)."
  value       = module.ecs.db_secret_arn
}

output "tokens_secret_arn" {
  description = "Secrets Manager secret with the agent tokens (by cluster) and API tokens (by name) in clear: give each cluster's agents theirs (docs/deploy-aws.md)."
  value       = module.ecs.tokens_secret_arn
}

output "ci_role_arn" {
  description = "IAM role of the CI workflow (GitHub repository variable AWS_ROLE_ARN)."
  value       = local.ci == 1 ? aws_iam_role.ci[0].arn : null
}

output "github_variables" {
  description = "The GitHub repository variables .github/workflows/ci.yml reads (Settings → Secrets and variables → Actions → Variables)."
  value = {
    AWS_REGION                    = var.region
    AWS_ACCOUNT_ID                = data.aws_caller_identity.current.account_id
    AWS_ROLE_ARN                  = local.ci == 1 ? aws_iam_role.ci[0].arn : ""
    ECS_CLUSTER                   = module.ecs.cluster_name
    ECS_SERVICE                   = module.ecs.service_name
    ECS_TASK_FAMILY               = module.ecs.task_family
    ECS_EXECUTION_ROLE_ARN        = module.ecs.execution_role_arn
    ECS_TASK_ROLE_ARN             = module.ecs.task_role_arn
    ECS_LOG_GROUP                 = module.ecs.log_group_name
    COLLECTOR_DB_SECRET_ARN       = module.ecs.db_secret_arn == null ? "" : module.ecs.db_secret_arn
    COLLECTOR_AUTH_SECRET_ARN     = module.ecs.auth_secret_arn
    COLLECTOR_TLS_SECRET_ARN      = module.ecs.grpc_tls_secret_arn
    COLLECTOR_TASK_DEFINITION_SRC = module.ecs.ledger == "postgres" ? "repo" : "live"
    # Terraform's collector_environment / collector_secrets, added to the repository's task definition by the CI.
    COLLECTOR_EXTRA_ENVIRONMENT_JSON = jsonencode(var.collector_environment)
    COLLECTOR_EXTRA_SECRETS_JSON     = jsonencode(var.collector_secrets)
  }
}

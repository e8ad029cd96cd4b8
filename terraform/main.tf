# gpucost on AWS: the network and the collector's load balancer, the EKS cluster whose GPU nodes run the agent,
# the collector on ECS Fargate, the ECR repositories the CI pipeline pushes to, and that pipeline's role.
# docs/deploy-aws.md walks through it; examples/prod.tfvars is a complete input.

locals {
  cluster_name = coalesce(var.eks_cluster_name, "${var.name}-${var.environment}")

  tags = merge(
    {
      Project     = "gpucost"
      Environment = var.environment
      ManagedBy   = "terraform"
    },
    var.tags,
  )
}

module "networking" {
  source = "./modules/networking"

  name                    = var.name
  vpc_cidr                = var.vpc_cidr
  availability_zones      = var.availability_zones
  az_count                = var.az_count
  single_nat_gateway      = var.single_nat_gateway
  eks_cluster_name        = local.cluster_name
  flow_log_retention_days = var.log_retention_days

  certificate_arn         = var.certificate_arn
  alb_internal            = var.alb_internal
  alb_deletion_protection = var.deletion_protection
  api_ingress_cidrs       = var.api_ingress_cidrs
  agent_ingress_cidrs     = var.agent_ingress_cidrs
  grpc_listener_port      = var.grpc_listener_port
  waf_web_acl_arn         = var.waf_web_acl_arn

  tags = local.tags
}

module "eks" {
  source = "./modules/eks"

  cluster_name                 = local.cluster_name
  kubernetes_version           = var.kubernetes_version
  vpc_id                       = module.networking.vpc_id
  subnet_ids                   = module.networking.private_subnet_ids
  endpoint_public_access       = var.eks_endpoint_public_access
  public_access_cidrs          = var.eks_public_access_cidrs
  cluster_admin_principal_arns = var.eks_admin_principal_arns
  system_node_group            = var.system_node_group
  gpu_node_groups              = var.gpu_node_groups
  addon_versions               = var.eks_addon_versions
  log_retention_days           = var.log_retention_days
  agent_namespace              = var.gpucost_namespace
  collector_namespace          = var.gpucost_namespace
  discovery_regions            = var.discovery_regions

  tags = local.tags
}

module "ecs" {
  source = "./modules/ecs"

  name                  = var.name
  vpc_id                = module.networking.vpc_id
  subnet_ids            = module.networking.private_subnet_ids
  alb_security_group_id = module.networking.alb_security_group_id
  http_target_group_arn = module.networking.http_target_group_arn
  grpc_target_group_arn = module.networking.grpc_target_group_arn

  collector_image       = var.collector_image
  cpu                   = var.collector_cpu
  memory                = var.collector_memory
  desired_count         = var.collector_desired_count
  ledger                = var.ledger
  agent_clusters        = distinct(concat([local.cluster_name], var.extra_agent_clusters))
  api_tokens            = var.api_tokens
  collector_environment = var.collector_environment
  collector_secrets     = var.collector_secrets
  discovery_regions     = var.discovery_regions

  db_instance_class   = var.db_instance_class
  db_engine_version   = var.db_engine_version
  db_multi_az         = var.db_multi_az
  db_iam_user         = var.db_iam_user
  deletion_protection = var.deletion_protection
  log_retention_days  = var.log_retention_days

  tags = local.tags
}

# A production layout: three zones, a NAT gateway per zone, a private EKS API, two GPU node groups, and the
# collector on ECS Fargate with its ledger in a multi-AZ RDS for PostgreSQL.
#
#   terraform init -backend-config=examples/backend.hcl
#   terraform plan -var-file=examples/prod.tfvars -out=prod.plan
#
# ledger = "postgres" needs a collector built with the PostgreSQL backend (its own issue). Until then deploy with
# ledger = "sqlite-efs" (see examples/small-fleet.tfvars and docs/deploy-aws.md).

name        = "gpucost"
environment = "prod"
region      = "us-east-1"

tags = {
  Owner      = "platform-team"
  CostCenter = "CC-1042"
}

# --- Network ---
vpc_cidr           = "10.40.0.0/16"
availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
single_nat_gateway = false

# The collector's load balancer stays internal: agents on this VPC's GPU nodes, people through the corporate
# network (VPN / Direct Connect ranges below).
certificate_arn     = "arn:aws:acm:us-east-1:111122223333:certificate/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
alb_internal        = true
api_ingress_cidrs   = ["10.0.0.0/8"]
agent_ingress_cidrs = ["10.40.0.0/16"]
grpc_listener_port  = 50051

# --- EKS ---
kubernetes_version         = "1.34"
eks_endpoint_public_access = false
eks_admin_principal_arns   = ["arn:aws:iam::111122223333:role/platform-admin"]

system_node_group = {
  instance_types = ["m7i.xlarge"]
  min_size       = 3
  max_size       = 6
  desired_size   = 3
}

gpu_node_groups = [
  {
    name           = "a10g"
    instance_types = ["g5.2xlarge", "g5.4xlarge"]
    min_size       = 0
    max_size       = 8
    desired_size   = 2
    labels         = { "gpucost.io/gpu-class" = "inference" }
  },
  {
    name           = "a100-spot"
    instance_types = ["p4d.24xlarge"]
    capacity_type  = "SPOT"
    min_size       = 0
    max_size       = 2
    desired_size   = 0
    disk_size_gib  = 500
    labels         = { "gpucost.io/gpu-class" = "training" }
    taints         = [{ key = "gpucost.io/training-only", value = "true", effect = "NO_SCHEDULE" }]
  },
]

# --- Collector on ECS ---
collector_image         = "111122223333.dkr.ecr.us-east-1.amazonaws.com/gpucost-collector:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
collector_cpu           = 1024
collector_memory        = 2048
collector_desired_count = 2
ledger                  = "postgres"
db_instance_class       = "db.m7g.large"
db_multi_az             = true
deletion_protection     = true

collector_environment = {
  GPUCOST_BACKSTAGE_URL = "https://backstage.internal.example.com"
  GPUCOST_MLFLOW_URL    = "https://mlflow.internal.example.com"
}

collector_secrets = {
  GPUCOST_BACKSTAGE_TOKEN     = "arn:aws:secretsmanager:us-east-1:111122223333:secret:gpucost/backstage-token-AbCdEf"
  GPUCOST_ALERT_SLACK_WEBHOOK = "arn:aws:secretsmanager:us-east-1:111122223333:secret:gpucost/slack-webhook-GhIjKl"
}

# --- CI (.github/workflows/ci.yml) ---
github_repository           = "acme/gpucost"
create_github_oidc_provider = false # the account already trusts GitHub Actions

# --- Everything ---

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "gpucost"
}

variable "environment" {
  description = "Environment name, in tags and in the default EKS cluster name."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "tags" {
  description = "Tags on every resource (merged with Project, Environment and ManagedBy)."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keep flow logs, EKS control plane logs and the collector's logs."
  type        = number
  default     = 365
}

variable "deletion_protection" {
  description = "Deletion protection on the load balancer and the ledger database."
  type        = bool
  default     = true
}

# --- Network and load balancer ---

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/16 or larger)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Zones to use (2 to 4); empty: the first az_count zones of the region."
  type        = list(string)
  default     = []
}

variable "az_count" {
  description = "Zones to use when availability_zones is empty."
  type        = number
  default     = 3
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones instead of one per zone."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate for the collector's HTTPS listeners (API on 443, gRPC on grpc_listener_port)."
  type        = string
}

variable "alb_internal" {
  description = "Internal load balancer (default) or internet-facing."
  type        = bool
  default     = true
}

variable "api_ingress_cidrs" {
  description = "CIDRs allowed to the HTTPS API and dashboard on 443; empty: the VPC."
  type        = list(string)
  default     = []
}

variable "agent_ingress_cidrs" {
  description = "CIDRs allowed to the agents' gRPC listener; empty: the VPC (this VPC's EKS nodes)."
  type        = list(string)
  default     = []
}

variable "grpc_listener_port" {
  description = "Port of the load balancer's HTTPS listener for agents' gRPC."
  type        = number
  default     = 50051
}

variable "waf_web_acl_arn" {
  description = "Regional WAF web ACL for the load balancer; null: none."
  type        = string
  default     = null
}

# --- EKS ---

variable "eks_cluster_name" {
  description = "EKS cluster name; null: <name>-<environment>."
  type        = string
  default     = null
}

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS control plane."
  type        = string
  default     = "1.34"
}

variable "eks_endpoint_public_access" {
  description = "Public Kubernetes API endpoint (restricted to eks_public_access_cidrs)."
  type        = bool
  default     = false
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to the public Kubernetes API endpoint."
  type        = list(string)
  default     = []
}

variable "eks_admin_principal_arns" {
  description = "IAM principals given cluster-admin through access entries."
  type        = list(string)
  default     = []
}

variable "system_node_group" {
  description = "The system node group (see modules/eks)."
  type = object({
    instance_types = optional(list(string), ["m6i.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    ami_type       = optional(string, "AL2023_x86_64_STANDARD")
    min_size       = optional(number, 2)
    max_size       = optional(number, 6)
    desired_size   = optional(number, 3)
    disk_size_gib  = optional(number, 50)
    labels         = optional(map(string), {})
  })
  default = {}
}

variable "gpu_node_groups" {
  description = "GPU node groups, tainted nvidia.com/gpu=true:NoSchedule and labelled (see modules/eks)."
  type = list(object({
    name           = string
    instance_types = list(string)
    capacity_type  = optional(string, "ON_DEMAND")
    ami_type       = optional(string, "AL2023_x86_64_NVIDIA")
    min_size       = optional(number, 0)
    max_size       = optional(number, 4)
    desired_size   = optional(number, 1)
    disk_size_gib  = optional(number, 200)
    labels         = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = optional(string)
      effect = string
    })), [])
  }))
  default = []
}

variable "eks_addon_versions" {
  description = "Versions of vpc-cni, coredns, kube-proxy, eks-pod-identity-agent; missing: EKS's default."
  type        = map(string)
  default     = {}
}

variable "gpucost_namespace" {
  description = "Namespace of the gpucost agent (and of a collector on EKS)."
  type        = string
  default     = "gpucost"
}

# --- Collector on ECS ---

variable "collector_image" {
  description = "The collector's image (ECR repository URL and tag) for the first deployment; CI deploys later ones."
  type        = string
}

variable "collector_cpu" {
  description = "Task CPU units (1024 = 1 vCPU: about 30 000 nodes reporting every 15 s; docs/capacity.md)."
  type        = number
  default     = 1024
}

variable "collector_memory" {
  description = "Task memory (MiB): about 256 MiB + 128 KiB per node (2048: ~14 000 nodes; docs/capacity.md)."
  type        = number
  default     = 2048
}

variable "collector_desired_count" {
  description = "Collector tasks with ledger = postgres (>= 2)."
  type        = number
  default     = 2
}

variable "ledger" {
  description = "\"postgres\" (RDS, >= 2 stateless tasks; needs the collector's PostgreSQL backend) or \"sqlite-efs\" (one task, SQLite on EFS, AWS Backup)."
  type        = string
  default     = "postgres"
}

variable "db_instance_class" {
  description = "RDS instance class of the ledger."
  type        = string
  default     = "db.m7g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL version of the ledger."
  type        = string
  default     = "16"
}

variable "db_multi_az" {
  description = "Multi-AZ ledger database."
  type        = bool
  default     = true
}

variable "db_iam_user" {
  description = "When set, the collector logs in to the ledger database as this user with RDS IAM tokens from its task role instead of the master password (create the user once first: docs/deploy-aws.md)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,62})?$", var.db_iam_user))
    error_message = "db_iam_user must be a PostgreSQL user name: lower-case letters, digits and _, not starting with a digit."
  }
}

variable "extra_agent_clusters" {
  description = "Clusters other than this EKS cluster whose agents report to this collector (one agent token each)."
  type        = list(string)
  default     = []
}

variable "api_tokens" {
  description = "API and dashboard tokens to generate: name => \"read\" or \"admin\"."
  type        = map(string)
  default = {
    admin     = "admin"
    dashboard = "read"
  }
}

variable "collector_environment" {
  description = "Extra collector environment (README configuration table)."
  type        = map(string)
  default     = {}
}

variable "collector_secrets" {
  description = "Extra collector secrets: variable name => Secrets Manager ARN."
  type        = map(string)
  default     = {}
}

variable "discovery_regions" {
  description = "Regions the collector's AWS discovery reads; empty: this region."
  type        = list(string)
  default     = []
}

# --- Images and CI ---

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflow (.github/workflows/ci.yml) pushes images and deploys; null: no CI role."
  type        = string
  default     = null
}

variable "github_deploy_ref" {
  description = "Git ref allowed to assume the CI role."
  type        = string
  default     = "refs/heads/main"
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (false when the account already has one)."
  type        = bool
  default     = true
}

variable "github_environment" {
  description = "GitHub environment of the deploy jobs (its protection rules gate production); also allowed to assume the CI role."
  type        = string
  default     = "production"
}

variable "name" {
  description = "Name prefix of every resource; the ECS cluster is called this and the task family <name>-collector."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the tasks, the database and the file system."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (NAT egress) for the tasks, the database and the file system's mount targets."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets in different zones."
  }
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer; the tasks accept traffic from it only."
  type        = string
}

variable "http_target_group_arn" {
  description = "Target group of the collector's HTTP API (health check /readyz)."
  type        = string
}

variable "grpc_target_group_arn" {
  description = "Target group of the collector's gRPC ingest (protocol_version GRPC)."
  type        = string
}

variable "collector_image" {
  description = "The collector's image, e.g. <account>.dkr.ecr.<region>.amazonaws.com/gpucost-collector:<git sha> (docker/collector.Dockerfile). After the first apply the CI pipeline deploys new images; see docs/deploy-aws.md."
  type        = string
}

variable "cpu" {
  description = "Task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "memory" {
  description = "Task memory (MiB)."
  type        = number
  default     = 2048
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the image."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "http_port" {
  description = "The collector's HTTP API port (GPUCOST_HTTP_ADDR)."
  type        = number
  default     = 8080
}

variable "grpc_port" {
  description = "The collector's gRPC ingest port (GPUCOST_GRPC_ADDR)."
  type        = number
  default     = 50051
}

variable "ledger" {
  description = <<-EOT
    Where the ledger lives.
    "postgres": Amazon RDS for PostgreSQL, desired_count tasks (>= 2), stateless. Needs the collector's PostgreSQL
      backend (its own issue): GPUCOST_DB is a postgres:// URL from Secrets Manager.
    "sqlite-efs": the SQLite ledger on EFS, exactly one task (one writer), AWS Backup of the file system. For small
      fleets, and the only mode today's collector supports.
  EOT
  type        = string
  default     = "postgres"

  validation {
    condition     = contains(["postgres", "sqlite-efs"], var.ledger)
    error_message = "ledger must be \"postgres\" or \"sqlite-efs\"."
  }
}

variable "desired_count" {
  description = "Collector tasks with ledger = \"postgres\" (at least 2, spread over zones). sqlite-efs always runs exactly one."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 2
    error_message = "desired_count must be at least 2 (ledger = \"sqlite-efs\" runs one task regardless)."
  }
}

variable "aws_discovery" {
  description = "Run the collector's EKS/ECS discovery (GPUCOST_AWS_DISCOVERY) with the task role's read-only discovery policy."
  type        = bool
  default     = true
}

variable "discovery_regions" {
  description = "Regions discovery may read; empty: this region."
  type        = list(string)
  default     = []
}

variable "agent_clusters" {
  description = "Clusters whose agents may write usage: one agent token each (an agent token writes only its cluster's usage)."
  type        = list(string)

  validation {
    condition     = length(var.agent_clusters) > 0 && length(distinct(var.agent_clusters)) == length(var.agent_clusters)
    error_message = "agent_clusters must list at least one cluster, each once."
  }
}

variable "api_tokens" {
  description = "API and dashboard tokens to generate: name => scope (\"read\", or \"admin\" for budgets, closing periods, re-pricing)."
  type        = map(string)
  default = {
    admin     = "admin"
    dashboard = "read"
  }

  validation {
    condition     = length(var.api_tokens) > 0 && alltrue([for s in values(var.api_tokens) : contains(["read", "admin"], s)])
    error_message = "api_tokens needs at least one token, each with scope \"read\" or \"admin\"."
  }
}

variable "collector_environment" {
  description = "Extra environment of the collector (README's configuration table), e.g. GPUCOST_BACKSTAGE_URL, GPUCOST_MLFLOW_URL."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(setintersection(keys(var.collector_environment), ["GPUCOST_DB", "GPUCOST_GRPC_ADDR", "GPUCOST_HTTP_ADDR", "GPUCOST_AUTH", "GPUCOST_AUTH_TOML", "GPUCOST_TLS_CERT", "GPUCOST_TLS_KEY", "GPUCOST_TLS_CERT_PEM", "GPUCOST_TLS_KEY_PEM", "GPUCOST_TLS_CLIENT_CA", "GPUCOST_INSECURE"])) == 0
    error_message = "collector_environment must not set GPUCOST_DB, GPUCOST_GRPC_ADDR, GPUCOST_HTTP_ADDR, GPUCOST_AUTH*, GPUCOST_TLS_* or GPUCOST_INSECURE (the module sets them)."
  }
}

variable "collector_secrets" {
  description = "Extra secret environment of the collector: variable name => Secrets Manager secret ARN (optionally ARN:json-key::), e.g. GPUCOST_BACKSTAGE_TOKEN, GPUCOST_ALERT_SLACK_WEBHOOK, GPUCOST_ALERT_WEBHOOK_SECRET. The execution role may read exactly these."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for ref in values(var.collector_secrets) : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^:]+(:[^:]*:[^:]*:[^:]*)?$", ref))])
    error_message = "collector_secrets values must be Secrets Manager secret ARNs, optionally followed by :json-key:version-stage:version-id."
  }

  validation {
    condition     = length(setintersection(keys(var.collector_secrets), ["GPUCOST_DB", "GPUCOST_GRPC_ADDR", "GPUCOST_HTTP_ADDR", "GPUCOST_AUTH", "GPUCOST_AUTH_TOML", "GPUCOST_TLS_CERT", "GPUCOST_TLS_KEY", "GPUCOST_TLS_CERT_PEM", "GPUCOST_TLS_KEY_PEM", "GPUCOST_TLS_CLIENT_CA", "GPUCOST_INSECURE"])) == 0
    error_message = "collector_secrets must not set GPUCOST_DB, GPUCOST_AUTH*, GPUCOST_TLS_* or GPUCOST_INSECURE (the module sets them)."
  }
}

variable "egress_https_cidrs" {
  description = "Where the tasks may open HTTPS connections (ECR, Secrets Manager, CloudWatch, AWS APIs, Backstage, MLflow, Slack). Narrow it when those are reached through VPC endpoints and a proxy."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "extra_egress" {
  description = "Other destinations of the tasks, e.g. an in-VPC MLflow on 5000."
  type = list(object({
    description = string
    cidr        = string
    port        = number
  }))
  default = []
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL ledger."
  type        = string
  default     = "db.m7g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL major (or major.minor) version."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial storage of the database (GiB)."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling (GiB)."
  type        = number
  default     = 500
}

variable "db_multi_az" {
  description = "A standby in a second zone with automatic fail-over."
  type        = bool
  default     = true
}

variable "db_iam_user" {
  description = "When set, the collector logs in as this database user with RDS IAM tokens (auth=rds-iam) made from its task role, which gets rds-db:connect for it; the URL in the secret then holds no password. Empty: the master user and its password."
  type        = string
  default     = ""
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery) of the database."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Deletion protection on the database; the final snapshot is always taken."
  type        = bool
  default     = true
}

variable "efs_backup_schedule" {
  description = "AWS Backup schedule (cron) of the SQLite-on-EFS ledger."
  type        = string
  default     = "cron(0 3 * * ? *)"
}

variable "efs_backup_retention_days" {
  description = "Days AWS Backup keeps each backup of the SQLite-on-EFS ledger."
  type        = number
  default     = 35
}

variable "log_retention_days" {
  description = "Days the collector's logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# The collector on ECS Fargate, behind the load balancer's two target groups (HTTP API, gRPC ingest).
#
# ledger = "postgres" (default): stateless tasks (desired_count >= 2) keeping the ledger in Amazon RDS for
# PostgreSQL — encrypted, multi-AZ, credentials generated here into Secrets Manager and injected as the task secret
# GPUCOST_DB (a postgres:// URL). The collector's PostgreSQL backend is its own issue: until a collector with it
# is deployed, use ledger = "sqlite-efs" (docs/deploy-aws.md).
#
# ledger = "sqlite-efs": the SQLite ledger on an encrypted EFS file system through an access point, exactly one
# task (one writer; deployments stop the old task before starting the new one), AWS Backup of the file system.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  postgres   = var.ledger == "postgres"
  sqlite_efs = var.ledger == "sqlite-efs"

  container_name = "gpucost-collector"
  ledger_path    = "/var/lib/gpucost"

  environment = merge(
    {
      GPUCOST_GRPC_ADDR  = "0.0.0.0:${var.grpc_port}"
      GPUCOST_HTTP_ADDR  = "0.0.0.0:${var.http_port}"
      GPUCOST_LOG_FORMAT = "json"
      RUST_LOG           = "info"
    },
    var.aws_discovery ? { GPUCOST_AWS_DISCOVERY = "true" } : {},
    local.sqlite_efs ? { GPUCOST_DB = "${local.ledger_path}/gpucost.db" } : {},
    var.collector_environment,
  )

  secrets = merge(
    {
      GPUCOST_AUTH_TOML    = aws_secretsmanager_secret.auth.arn
      GPUCOST_TLS_CERT_PEM = "${aws_secretsmanager_secret.grpc_tls.arn}:cert::"
      GPUCOST_TLS_KEY_PEM  = "${aws_secretsmanager_secret.grpc_tls.arn}:key::"
    },
    local.postgres ? { GPUCOST_DB = "${aws_secretsmanager_secret.db[0].arn}:url::" } : {},
    var.collector_secrets,
  )

  # Secrets Manager ARNs the execution role may read (a "ARN:json-key::" reference reads the secret ARN).
  secret_arns = distinct(concat(
    [aws_secretsmanager_secret.auth.arn, aws_secretsmanager_secret.grpc_tls.arn],
    local.postgres ? [aws_secretsmanager_secret.db[0].arn] : [],
    [for ref in values(var.collector_secrets) : join(":", slice(split(":", ref), 0, 7))],
  ))

  container = {
    name                   = local.container_name
    image                  = var.collector_image
    essential              = true
    command                = ["serve"]
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    privileged             = false
    stopTimeout            = 60

    portMappings = [
      { name = "http", containerPort = var.http_port, protocol = "tcp", appProtocol = "http" },
      { name = "grpc", containerPort = var.grpc_port, protocol = "tcp", appProtocol = "grpc" },
    ]

    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets     = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]

    # The image's probe: GET /readyz on the HTTP port (docker/collector-healthcheck.sh).
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/gpucost-healthcheck"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }

    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }

    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]

    mountPoints = concat(
      [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }],
      local.sqlite_efs ? [{ sourceVolume = "ledger", containerPath = local.ledger_path, readOnly = false }] : [],
    )

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.collector.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "collector"
        mode                  = "non-blocking"
        max-buffer-size       = "25m"
      }
    }
  }
}

# ---------------------------------------------------------------------------------------------------------------
# One key for everything this module stores: logs, the database, its secret, the file system, backups
# ---------------------------------------------------------------------------------------------------------------

module "key" {
  source = "../logs-kms-key"

  description = "${var.name}: collector logs, ledger database or file system, secrets, backups"
  alias       = "${var.name}-collector"
  tags        = var.tags
}

moved {
  from = aws_kms_key.this
  to   = module.key.aws_kms_key.this
}

moved {
  from = aws_kms_alias.this
  to   = module.key.aws_kms_alias.this
}

resource "aws_cloudwatch_log_group" "collector" {
  name              = "/ecs/${var.name}/collector"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "exec" {
  name              = "/ecs/${var.name}/exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

# ---------------------------------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = module.key.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
    base              = 1
  }
}

# ---------------------------------------------------------------------------------------------------------------
# IAM: execution role (pull, logs, secrets) and task role (discovery, EFS)
# ---------------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-collector-exec-"
  description        = "ECS execution role of the gpucost collector: pull the image, write logs, read its secrets"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ReadTheCollectorsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }

  statement {
    sid       = "DecryptThem"
    actions   = ["kms:Decrypt"]
    resources = [module.key.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "read-collector-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-collector-task-"
  description        = "gpucost collector task: AWS discovery (read-only) and its ledger file system"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

module "discovery_policy" {
  source = "../discovery-policy"

  regions = var.discovery_regions
}

resource "aws_iam_role_policy" "task_discovery" {
  count = var.aws_discovery ? 1 : 0

  name   = "gpucost-discovery"
  role   = aws_iam_role.task.id
  policy = module.discovery_policy.json
}

# ---------------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------------

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-collector-"
  description = "gpucost collector tasks: from the load balancer only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-collector" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_http" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "HTTP API from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.http_port
  to_port                      = var.http_port
  referenced_security_group_id = var.alb_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_grpc" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "gRPC ingest from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.grpc_port
  to_port                      = var.grpc_port
  referenced_security_group_id = var.alb_security_group_id
}

#trivy:ignore:AVD-AWS-0104 HTTPS egress to AWS APIs (ECR, Secrets Manager, CloudWatch, EKS/ECS discovery), Backstage, MLflow and alert webhooks whose addresses are not fixed; narrow with egress_https_cidrs.
resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  for_each = toset(var.egress_https_cidrs)

  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs, ECR, Backstage, MLflow, alert webhooks"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks_extra" {
  for_each = { for e in var.extra_egress : "${e.cidr}:${e.port}" => e }

  security_group_id = aws_security_group.tasks.id
  description       = each.value.description
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

# ---------------------------------------------------------------------------------------------------------------
# Task definition and service
# ---------------------------------------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "collector" {
  family                   = "${var.name}-collector"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Scratch space (the root filesystem is read-only): SQLite's temporary files, and the auth file and TLS files the
  # entrypoint writes from the task secrets.
  volume {
    name = "tmp"
  }

  dynamic "volume" {
    for_each = local.sqlite_efs ? [1] : []

    content {
      name = "ledger"

      efs_volume_configuration {
        file_system_id     = aws_efs_file_system.ledger[0].id
        transit_encryption = "ENABLED"

        authorization_config {
          access_point_id = aws_efs_access_point.ledger[0].id
          iam             = "ENABLED"
        }
      }
    }
  }

  tags = var.tags
}

resource "aws_ecs_service" "collector" {
  name                               = "${var.name}-collector"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.collector.arn
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  desired_count                      = local.sqlite_efs ? 1 : var.desired_count
  health_check_grace_period_seconds  = 60
  enable_execute_command             = false
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false
  deployment_minimum_healthy_percent = local.sqlite_efs ? 0 : 50
  deployment_maximum_percent         = local.sqlite_efs ? 100 : 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.http_target_group_arn
    container_name   = local.container_name
    container_port   = var.http_port
  }

  load_balancer {
    target_group_arn = var.grpc_target_group_arn
    container_name   = local.container_name
    container_port   = var.grpc_port
  }

  tags = var.tags

  lifecycle {
    # After the first apply the CI pipeline (.github/workflows/ci.yml) registers new revisions from
    # deploy/ecs/collector-task-definition.json and rolls them out; Terraform does not roll them back.
    ignore_changes = [task_definition]
  }

  depends_on = [aws_iam_role_policy_attachment.execution]
}

# ledger = "postgres": the ledger in Amazon RDS for PostgreSQL. The master credentials are generated here, stored
# in Secrets Manager (with the postgres:// URL the collector takes as --db / GPUCOST_DB) and injected into the
# tasks as a secret; nothing is in the task definition in clear. They are also in the Terraform state: keep the
# state in an encrypted, access-controlled backend.
#
# The URL verifies the server's certificate against the RDS CA bundle the collector image carries
# (docker/collector.Dockerfile). With db_iam_user set, the collector logs in as that user with RDS IAM tokens made
# from its task role (auth=rds-iam): the URL holds no password, and the master password is only for
# administration.

locals {
  db_tls = "sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"
  db_iam = local.postgres && var.db_iam_user != ""
}

resource "random_password" "db" {
  count = local.postgres ? 1 : 0

  length  = 40
  special = false # the password goes into a URL
}

resource "aws_db_subnet_group" "ledger" {
  count = local.postgres ? 1 : 0

  name_prefix = "${var.name}-ledger-"
  description = "gpucost ledger database: private subnets"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "db" {
  count = local.postgres ? 1 : 0

  name_prefix = "${var.name}-ledger-db-"
  description = "gpucost ledger database: PostgreSQL from the collector tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-ledger-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  count = local.postgres ? 1 : 0

  security_group_id            = aws_security_group.db[0].id
  description                  = "PostgreSQL from the collector tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  count = local.postgres ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL ledger"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db[0].id
}

resource "aws_db_parameter_group" "ledger" {
  count = local.postgres ? 1 : 0

  name_prefix = "${var.name}-ledger-"
  family      = "postgres${split(".", var.db_engine_version)[0]}"
  description = "gpucost ledger: TLS only, slow statements and DDL logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.postgres ? 1 : 0

  name_prefix        = "${var.name}-rds-monitoring-"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.postgres ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# Created before the instance so that its exported logs are encrypted and expire.
resource "aws_cloudwatch_log_group" "db" {
  for_each = local.postgres ? toset(["postgresql", "upgrade"]) : toset([])

  name              = "/aws/rds/instance/${var.name}-ledger/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

resource "aws_db_instance" "ledger" {
  count = local.postgres ? 1 : 0

  identifier     = "${var.name}-ledger"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name  = "gpucost"
  username = "gpucost"
  password = random_password.db[0].result
  port     = 5432

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = module.key.arn

  multi_az               = var.db_multi_az
  db_subnet_group_name   = aws_db_subnet_group.ledger[0].name
  vpc_security_group_ids = [aws_security_group.db[0].id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.ledger[0].name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  allow_major_version_upgrade         = false
  apply_immediately                   = false
  maintenance_window                  = "sun:04:00-sun:05:00"

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "02:00-03:00"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-ledger-final"

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = module.key.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring[0].arn

  tags = merge(var.tags, { Name = "${var.name}-ledger" })

  depends_on = [aws_cloudwatch_log_group.db, aws_iam_role_policy_attachment.rds_monitoring]
}

resource "aws_secretsmanager_secret" "db" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a rotation Lambda and a collector that re-reads GPUCOST_DB; both come with the PostgreSQL backend issue. Rotate by re-applying with a new random_password (taint) and redeploying.
  count = local.postgres ? 1 : 0

  name_prefix             = "${var.name}/collector/ledger-db-"
  description             = "gpucost collector: PostgreSQL ledger credentials and the postgres:// URL injected as GPUCOST_DB"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "db" {
  count = local.postgres ? 1 : 0

  secret_id = aws_secretsmanager_secret.db[0].id
  secret_string = jsonencode({
    engine   = "postgres"
    host     = aws_db_instance.ledger[0].address
    port     = aws_db_instance.ledger[0].port
    dbname   = aws_db_instance.ledger[0].db_name
    username = aws_db_instance.ledger[0].username
    password = random_password.db[0].result
    url = (local.db_iam
      ? "postgres://${var.db_iam_user}@${aws_db_instance.ledger[0].address}:${aws_db_instance.ledger[0].port}/${aws_db_instance.ledger[0].db_name}?${local.db_tls}&auth=rds-iam"
      : "postgres://${aws_db_instance.ledger[0].username}:${random_password.db[0].result}@${aws_db_instance.ledger[0].address}:${aws_db_instance.ledger[0].port}/${aws_db_instance.ledger[0].db_name}?${local.db_tls}"
    )
  })
}

# With db_iam_user: the task role may log in as that user (and no other) with IAM tokens.
data "aws_iam_policy_document" "rds_connect" {
  count = local.db_iam ? 1 : 0

  statement {
    sid       = "LedgerLogin"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${aws_db_instance.ledger[0].resource_id}/${var.db_iam_user}"]
  }
}

resource "aws_iam_role_policy" "task_rds_connect" {
  count = local.db_iam ? 1 : 0

  name   = "gpucost-ledger-iam-login"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.rds_connect[0].json
}

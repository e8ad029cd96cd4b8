# ledger = "sqlite-efs": the small-fleet alternative. The SQLite ledger on an encrypted EFS file system, mounted by
# exactly one task (SQLite allows one writer; the service stops the old task before starting a new one) through an
# access point owned by the image's user (10001), over TLS with IAM authorization. AWS Backup copies the file
# system on a schedule into an encrypted vault.
#
# EFS backups are incremental file copies, not an atomic snapshot of the database: a backup taken during a write
# can hold a ledger and WAL from slightly different instants, which SQLite recovers like after a crash. See
# docs/deploy-aws.md for restoring, and for the PostgreSQL layout once the fleet outgrows one task.

resource "aws_efs_file_system" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  creation_token   = "${var.name}-ledger"
  encrypted        = true
  kms_key_id       = module.key.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"

  tags = merge(var.tags, { Name = "${var.name}-ledger" })
}

resource "aws_efs_backup_policy" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  file_system_id = aws_efs_file_system.ledger[0].id

  backup_policy {
    status = "DISABLED" # backed up by the plan below, on its schedule and retention, instead of EFS's default plan
  }
}

resource "aws_security_group" "efs" {
  count = local.sqlite_efs ? 1 : 0

  name_prefix = "${var.name}-ledger-efs-"
  description = "gpucost ledger file system: NFS from the collector task only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-ledger-efs" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_tasks" {
  count = local.sqlite_efs ? 1 : 0

  security_group_id            = aws_security_group.efs[0].id
  description                  = "NFS from the collector task"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_efs" {
  count = local.sqlite_efs ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "NFS to the ledger file system"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs[0].id
}

resource "aws_efs_mount_target" "ledger" {
  count = local.sqlite_efs ? length(var.subnet_ids) : 0

  file_system_id  = aws_efs_file_system.ledger[0].id
  subnet_id       = var.subnet_ids[count.index]
  security_groups = [aws_security_group.efs[0].id]
}

resource "aws_efs_access_point" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  file_system_id = aws_efs_file_system.ledger[0].id

  posix_user {
    uid = 10001
    gid = 10001
  }

  root_directory {
    path = "/gpucost"

    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }

  tags = merge(var.tags, { Name = "${var.name}-ledger" })
}

data "aws_iam_policy_document" "efs" {
  count = local.sqlite_efs ? 1 : 0

  statement {
    sid       = "CollectorTaskThroughTheAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.ledger[0].arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.ledger[0].arn]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.ledger[0].arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_efs_file_system_policy" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  file_system_id = aws_efs_file_system.ledger[0].id
  policy         = data.aws_iam_policy_document.efs[0].json
}

data "aws_iam_policy_document" "task_efs" {
  count = local.sqlite_efs ? 1 : 0

  statement {
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.ledger[0].arn]

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.ledger[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "task_efs" {
  count = local.sqlite_efs ? 1 : 0

  name   = "mount-ledger"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_efs[0].json
}

# --- AWS Backup of the file system ---

resource "aws_backup_vault" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  name        = "${var.name}-ledger"
  kms_key_arn = module.key.arn
  tags        = var.tags
}

resource "aws_backup_plan" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  name = "${var.name}-ledger"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.ledger[0].name
    schedule          = var.efs_backup_schedule
    start_window      = 60
    completion_window = 360

    lifecycle {
      delete_after = var.efs_backup_retention_days
    }
  }

  tags = var.tags
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  count = local.sqlite_efs ? 1 : 0

  name_prefix        = "${var.name}-ledger-backup-"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  for_each = local.sqlite_efs ? toset(["AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores"]) : toset([])

  role       = aws_iam_role.backup[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/${each.value}"
}

resource "aws_backup_selection" "ledger" {
  count = local.sqlite_efs ? 1 : 0

  name         = "${var.name}-ledger"
  plan_id      = aws_backup_plan.ledger[0].id
  iam_role_arn = aws_iam_role.backup[0].arn
  resources    = [aws_efs_file_system.ledger[0].arn]
}

# The images' repositories: immutable tags (CI tags by git SHA), scanned on push, encrypted with a KMS key, old
# untagged layers expired.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "ecr" {
  description             = "${var.name}: ECR repositories"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.ecr_key.json
}

data "aws_iam_policy_document" "ecr_key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key only; the account root statement delegates to IAM as AWS recommends.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; the account root statement delegates to IAM as AWS recommends.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only.
  statement {
    sid       = "AccountAdministersThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_ecr_repository" "image" {
  for_each = toset(["gpucost-agent", "gpucost-collector"])

  name                 = each.value
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.ecr.arn
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  for_each = aws_ecr_repository.image

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after 14 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 14
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the last 200 tagged images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 200
        }
        action = { type = "expire" }
      },
    ]
  })
}

# The least privilege the collector's AWS discovery (--aws-discovery, collector/src/discover/aws.rs) needs: list EKS
# clusters and describe their node groups (instance type, capacity type), list ECS clusters, their container
# instances and tasks. Read-only, and exactly the calls the collector makes (tests/tests/iam.rs runs it against
# moto with only this policy and records them). The List calls that IAM cannot scope to a resource
# (eks:ListClusters, ecs:ListClusters, ecs:ListTasks) are limited to the regions instead. Used by the EKS module
# (collector on EKS, through EKS Pod Identity) and the ECS module (task role).

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  regions    = length(var.regions) > 0 ? var.regions : [data.aws_region.current.name]
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

data "aws_iam_policy_document" "discovery" {
  statement {
    sid = "ListWhatCannotBeScoped"
    actions = [
      "eks:ListClusters",
      "ecs:ListClusters",
      "ecs:ListTasks",
    ]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = local.regions
    }
  }

  statement {
    sid       = "EksNodeGroups"
    actions   = ["eks:ListNodegroups"]
    resources = [for r in local.regions : "arn:${local.partition}:eks:${r}:${local.account_id}:cluster/*"]
  }

  statement {
    sid       = "EksNodeGroupDetails"
    actions   = ["eks:DescribeNodegroup"]
    resources = [for r in local.regions : "arn:${local.partition}:eks:${r}:${local.account_id}:nodegroup/*/*/*"]
  }

  statement {
    sid       = "EcsContainerInstances"
    actions   = ["ecs:ListContainerInstances"]
    resources = [for r in local.regions : "arn:${local.partition}:ecs:${r}:${local.account_id}:cluster/*"]
  }

  statement {
    sid       = "EcsContainerInstanceDetails"
    actions   = ["ecs:DescribeContainerInstances"]
    resources = [for r in local.regions : "arn:${local.partition}:ecs:${r}:${local.account_id}:container-instance/*"]
  }

  statement {
    sid       = "EcsTaskDetails"
    actions   = ["ecs:DescribeTasks"]
    resources = [for r in local.regions : "arn:${local.partition}:ecs:${r}:${local.account_id}:task/*"]
  }
}

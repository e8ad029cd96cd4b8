# The least privilege the collector's AWS discovery (--aws-discovery, collector/src/cost/) needs: list EKS clusters
# and describe their node groups (instance type, capacity type), list ECS clusters, their container instances and
# tasks, and describe the EC2 instances behind them. Read-only; the List*/Describe* calls that IAM cannot scope to
# a resource (eks:ListClusters, ecs:ListClusters, ecs:ListTasks, ec2:DescribeInstances) are limited to the regions
# instead. Used by the EKS module (collector on EKS, through EKS Pod Identity) and the ECS module (task role).

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  regions    = length(var.regions) > 0 ? var.regions : [data.aws_region.current.name]
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  arns = { for kind, pattern in {
    eks_cluster        = "eks:%s:${local.account_id}:cluster/*"
    eks_nodegroup      = "eks:%s:${local.account_id}:nodegroup/*/*/*"
    ecs_cluster        = "ecs:%s:${local.account_id}:cluster/*"
    container_instance = "ecs:%s:${local.account_id}:container-instance/*"
    ecs_task           = "ecs:%s:${local.account_id}:task/*"
  } : kind => [for r in local.regions : "arn:${local.partition}:${format(pattern, r)}"] }
}

data "aws_iam_policy_document" "discovery" {
  statement {
    sid = "ListWhatCannotBeScoped"
    actions = [
      "eks:ListClusters",
      "ecs:ListClusters",
      "ecs:ListTasks",
      "ec2:DescribeInstances",
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
    resources = local.arns.eks_cluster
  }

  statement {
    sid       = "EksNodeGroupDetails"
    actions   = ["eks:DescribeNodegroup"]
    resources = local.arns.eks_nodegroup
  }

  statement {
    sid       = "EcsContainerInstances"
    actions   = ["ecs:ListContainerInstances"]
    resources = local.arns.ecs_cluster
  }

  statement {
    sid       = "EcsContainerInstanceDetails"
    actions   = ["ecs:DescribeContainerInstances"]
    resources = local.arns.container_instance
  }

  statement {
    sid       = "EcsTaskDetails"
    actions   = ["ecs:DescribeTasks"]
    resources = local.arns.ecs_task
  }
}

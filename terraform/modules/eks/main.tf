# The EKS cluster gpucost measures: a private control plane with encrypted secrets and full control-plane logs,
# a system node group, GPU node groups tainted nvidia.com/gpu=true:NoSchedule, the vpc-cni, coredns, kube-proxy and
# eks-pod-identity-agent add-ons, and IAM through EKS Pod Identity for the gpucost agent and for a collector
# running on the cluster (AWS discovery, read-only).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  gpu_node_groups = { for g in var.gpu_node_groups : g.name => g }

  # Every node group's launch template settings, keyed "system" or "gpu-<name>".
  node_templates = merge(
    { system = { disk_size_gib = var.system_node_group.disk_size_gib } },
    { for name, g in local.gpu_node_groups : "gpu-${name}" => { disk_size_gib = g.disk_size_gib } },
  )

  addons = ["vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"]
}

# ---------------------------------------------------------------------------------------------------------------
# Encryption key for Kubernetes secrets and the control plane's log group
# ---------------------------------------------------------------------------------------------------------------

module "cluster_key" {
  source = "../logs-kms-key"

  description = "${var.cluster_name}: EKS secrets and control plane logs"
  alias       = "${var.cluster_name}-eks"
  tags        = var.tags
}

moved {
  from = aws_kms_key.cluster
  to   = module.cluster_key.aws_kms_key.this
}

moved {
  from = aws_kms_alias.cluster
  to   = module.cluster_key.aws_kms_alias.this
}

# Created before the cluster so that it is encrypted and has a retention (EKS would create it without either).
resource "aws_cloudwatch_log_group" "cluster" {
  name              = "/aws/eks/${var.cluster_name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.cluster_key.arn
  tags              = var.tags
}

# ---------------------------------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "cluster_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-cluster-"
  assume_role_policy = data.aws_iam_policy_document.cluster_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

data "aws_iam_policy_document" "cluster_kms" {
  statement {
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
    resources = [module.cluster_key.arn]
  }
}

resource "aws_iam_role_policy" "cluster_kms" {
  name   = "encrypt-secrets"
  role   = aws_iam_role.cluster.id
  policy = data.aws_iam_policy_document.cluster_kms.json
}

resource "aws_eks_cluster" "this" {
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]

    provider {
      key_arn = module.cluster_key.arn
    }
  }

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = !var.endpoint_public_access || length(var.public_access_cidrs) > 0
      error_message = "endpoint_public_access needs public_access_cidrs (EKS would otherwise open the endpoint to 0.0.0.0/0)."
    }
  }

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_iam_role_policy.cluster_kms,
    aws_cloudwatch_log_group.cluster,
  ]
}

resource "aws_eks_access_entry" "admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  type          = "STANDARD"
  tags          = var.tags
}

resource "aws_eks_access_policy_association" "admin" {
  for_each = toset(var.cluster_admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.admin]
}

# ---------------------------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-node-"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonEKS_CNI_Policy",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# IMDSv2 only, one hop: pods (other than host-network ones) cannot reach the node's credentials. The gpucost agent
# reads its instance type from the node's labels (node.kubernetes.io/instance-type), not from IMDS.
resource "aws_launch_template" "node" {
  for_each = local.node_templates

  name_prefix            = "${var.cluster_name}-${each.key}-"
  description            = "${var.cluster_name} ${each.key} nodes: IMDSv2, encrypted gp3 root volume"
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = each.value.disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-${each.key}" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-${each.key}" })
  }

  tags = var.tags
}

resource "aws_eks_node_group" "system" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "system"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = var.system_node_group.instance_types
  capacity_type   = var.system_node_group.capacity_type
  ami_type        = var.system_node_group.ami_type

  scaling_config {
    min_size     = var.system_node_group.min_size
    max_size     = var.system_node_group.max_size
    desired_size = var.system_node_group.desired_size
  }

  update_config {
    max_unavailable = 1
  }

  labels = merge(var.system_node_group.labels, { "gpucost.io/node-role" = "system" })

  launch_template {
    id      = aws_launch_template.node["system"].id
    version = aws_launch_template.node["system"].latest_version
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size] # owned by the cluster autoscaler / Karpenter once running
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu" {
  for_each = local.gpu_node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "gpu-${each.key}"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = each.value.instance_types
  capacity_type   = each.value.capacity_type
  ami_type        = each.value.ami_type

  scaling_config {
    min_size     = each.value.min_size
    max_size     = each.value.max_size
    desired_size = each.value.desired_size
  }

  update_config {
    max_unavailable = 1
  }

  labels = merge(each.value.labels, {
    "nvidia.com/gpu.present"    = "true"
    "gpucost.io/node-role"      = "gpu"
    "gpucost.io/gpu-node-group" = each.key
  })

  # Only pods that tolerate this land on GPU nodes: GPU workloads, the NVIDIA device plugin, the gpucost agent.
  taint {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }

  dynamic "taint" {
    for_each = each.value.taints

    content {
      key    = taint.value.key
      value  = taint.value.value
      effect = taint.value.effect
    }
  }

  launch_template {
    id      = aws_launch_template.node["gpu-${each.key}"].id
    version = aws_launch_template.node["gpu-${each.key}"].latest_version
  }

  tags = merge(var.tags, { "gpucost.io/gpu-node-group" = each.key })

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# ---------------------------------------------------------------------------------------------------------------
# Add-ons
# ---------------------------------------------------------------------------------------------------------------

resource "aws_eks_addon" "this" {
  for_each = toset(local.addons)

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.value
  addon_version               = lookup(var.addon_versions, each.value, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"
  tags                        = var.tags

  # coredns needs somewhere to run; the others are DaemonSets that follow the nodes.
  depends_on = [aws_eks_node_group.system]
}

# ---------------------------------------------------------------------------------------------------------------
# IAM for gpucost's pods, through EKS Pod Identity
# ---------------------------------------------------------------------------------------------------------------

# EKS Pod Identity tags its sessions with the cluster, namespace and service account; the trust policies require
# them, so that only the intended service account on this cluster can use each role.
data "aws_iam_policy_document" "pod_identity_assume" {
  for_each = {
    agent     = { namespace = var.agent_namespace, service_account = var.agent_service_account }
    collector = { namespace = var.collector_namespace, service_account = var.collector_service_account }
  }

  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/eks-cluster-name"
      values   = [var.cluster_name]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [each.value.namespace]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [each.value.service_account]
    }
  }
}

# The agent calls no AWS API today (it reads NVML, /proc, the kubelet and the Kubernetes API). Its role carries no
# permission: it gives the agent's pods their own identity instead of the node's, and is where a permission goes
# if the agent ever needs one.
resource "aws_iam_role" "agent" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-gpucost-agent-"
  description        = "gpucost agent (${var.agent_namespace}/${var.agent_service_account}); no permissions"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume["agent"].json
  tags               = var.tags
}

resource "aws_eks_pod_identity_association" "agent" {
  cluster_name    = aws_eks_cluster.this.name
  namespace       = var.agent_namespace
  service_account = var.agent_service_account
  role_arn        = aws_iam_role.agent.arn
  tags            = var.tags
}

module "discovery_policy" {
  source = "../discovery-policy"

  regions = var.discovery_regions
}

resource "aws_iam_role" "collector" {
  count = var.collector_on_eks ? 1 : 0

  name_prefix        = "${substr(var.cluster_name, 0, 20)}-gpucost-coll-"
  description        = "gpucost collector on EKS (${var.collector_namespace}/${var.collector_service_account}): AWS discovery, read-only"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume["collector"].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "collector_discovery" {
  count = var.collector_on_eks ? 1 : 0

  name   = "gpucost-discovery"
  role   = aws_iam_role.collector[0].id
  policy = module.discovery_policy.json
}

resource "aws_eks_pod_identity_association" "collector" {
  count = var.collector_on_eks ? 1 : 0

  cluster_name    = aws_eks_cluster.this.name
  namespace       = var.collector_namespace
  service_account = var.collector_service_account
  role_arn        = aws_iam_role.collector[0].arn
  tags            = var.tags
}

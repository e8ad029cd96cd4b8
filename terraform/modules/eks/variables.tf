variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must start with a letter and hold only letters, digits and dashes (at most 100)."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes version of the control plane (EKS standard support)."
  type        = string
  default     = "1.34"
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two zones) for the control plane's network interfaces and every node group."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must list at least two subnets in different zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API endpoint publicly (restricted to public_access_cidrs). false: reachable only from inside the VPC."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to the public API endpoint when endpoint_public_access is true; never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "public_access_cidrs must not contain 0.0.0.0/0."
  }
}

variable "cluster_admin_principal_arns" {
  description = "IAM roles or users given cluster-admin through EKS access entries (on top of the identity that creates the cluster)."
  type        = list(string)
  default     = []
}

variable "system_node_group" {
  description = "The system node group (CoreDNS, ArgoCD, Backstage, MLflow, monitoring): no taints, label gpucost.io/node-role=system."
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
  description = <<-EOT
    GPU node groups. Each is tainted nvidia.com/gpu=true:NoSchedule (plus its own taints) and labelled
    nvidia.com/gpu.present=true, gpucost.io/node-role=gpu and gpucost.io/gpu-node-group=<name> (plus its own labels):
    only pods that tolerate the taint (GPU workloads, the NVIDIA device plugin, the gpucost agent) land there.
  EOT
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

  validation {
    condition     = length(distinct([for g in var.gpu_node_groups : g.name])) == length(var.gpu_node_groups)
    error_message = "gpu_node_groups names must be unique."
  }

  validation {
    condition     = alltrue([for g in var.gpu_node_groups : contains(["ON_DEMAND", "SPOT", "CAPACITY_BLOCK"], g.capacity_type)])
    error_message = "gpu_node_groups capacity_type must be ON_DEMAND, SPOT or CAPACITY_BLOCK."
  }
}

variable "addon_versions" {
  description = "Versions of the EKS add-ons vpc-cni, coredns, kube-proxy and eks-pod-identity-agent; a missing key takes EKS's default for the cluster version."
  type        = map(string)
  default     = {}
}

variable "ebs_kms_key_arn" {
  description = "KMS key encrypting the nodes' root volumes; null: the account's default EBS key (aws/ebs)."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Days the control plane logs are kept."
  type        = number
  default     = 365
}

variable "agent_namespace" {
  description = "Namespace of the gpucost agent DaemonSet (charts/gpucost-agent)."
  type        = string
  default     = "gpucost"
}

variable "agent_service_account" {
  description = "Service account of the gpucost agent."
  type        = string
  default     = "gpucost-agent"
}

variable "collector_on_eks" {
  description = "Also give a collector running on this cluster (charts/gpucost-collector) the discovery role through EKS Pod Identity."
  type        = bool
  default     = true
}

variable "collector_namespace" {
  description = "Namespace of the collector when it runs on this cluster."
  type        = string
  default     = "gpucost"
}

variable "collector_service_account" {
  description = "Service account of the collector when it runs on this cluster."
  type        = string
  default     = "gpucost-collector"
}

variable "discovery_regions" {
  description = "Regions the collector's AWS discovery may read; empty: this region."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

output "cluster_name" {
  description = "The EKS cluster's name (the agents' --cluster)."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "The EKS cluster's ARN."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "The Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "The security group EKS created for the control plane and the managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "node_role_arn" {
  description = "IAM role of every managed node."
  value       = aws_iam_role.node.arn
}

output "gpu_node_groups" {
  description = "GPU node group names, by the name given in gpu_node_groups."
  value       = { for name, g in aws_eks_node_group.gpu : name => g.node_group_name }
}

output "agent_role_arn" {
  description = "IAM role of the gpucost agent's pods (EKS Pod Identity; no permissions)."
  value       = aws_iam_role.agent.arn
}

output "collector_role_arn" {
  description = "IAM role of a collector running on this cluster (EKS Pod Identity; discovery, read-only); null when collector_on_eks is false."
  value       = var.collector_on_eks ? aws_iam_role.collector[0].arn : null
}

output "discovery_actions" {
  description = "The actions the collector's discovery role allows."
  value       = module.discovery_policy.actions
}

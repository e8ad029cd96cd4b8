output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's IPv4 CIDR."
  value       = aws_vpc.this.cidr_block
}

output "availability_zones" {
  description = "Zones the subnets are in, in subnet order."
  value       = local.azs
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (NAT egress), one per zone: EKS nodes, ECS tasks, RDS, EFS."
  value       = aws_subnet.private[*].id
}

output "alb_arn" {
  description = "The collector's load balancer."
  value       = aws_lb.collector.arn
}

output "alb_dns_name" {
  description = "DNS name of the collector's load balancer: point the certificate's names at it (alias record)."
  value       = aws_lb.collector.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone id of the load balancer, for alias records."
  value       = aws_lb.collector.zone_id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer (the collector tasks accept traffic from it only)."
  value       = aws_security_group.alb.id
}

# ECS refuses a service whose target group has no load balancer yet: the ARNs are handed out once the listeners
# that forward to them exist.
output "http_target_group_arn" {
  description = "Target group of the collector's HTTP API (port 443 listener)."
  value       = aws_lb_target_group.http.arn
  depends_on  = [aws_lb_listener.https_api]
}

output "grpc_target_group_arn" {
  description = "Target group of the collector's gRPC ingest (grpc_listener_port listener, protocol_version GRPC)."
  value       = aws_lb_target_group.grpc.arn
  depends_on  = [aws_lb_listener.https_grpc]
}

output "grpc_listener_port" {
  description = "Port agents connect to over TLS."
  value       = var.grpc_listener_port
}

output "alb_logs_bucket" {
  description = "S3 bucket holding the load balancer's access logs."
  value       = aws_s3_bucket.alb_logs.id
}

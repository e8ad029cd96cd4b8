variable "name" {
  description = "Name prefix of every resource (VPC, subnets, load balancer, target groups)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lower-case letters, digits or dashes, starting with a letter (target group names are limited to 32 characters)."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC. Public subnets are /22 slices of its first /19, private subnets the following /19s (sized for EKS pod IPs)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("/([0-9]|1[0-6])$", var.vpc_cidr))
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /16 or larger."
  }
}

variable "az_count" {
  description = "Availability zones to spread the subnets (and, unless single_nat_gateway, the NAT gateways) over."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be 2, 3 or 4 (an ALB needs two zones)."
  }
}

variable "availability_zones" {
  description = "Zone names to use, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]. Empty: the first az_count zones of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4)
    error_message = "availability_zones must list 2 to 4 zones (or be empty)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper, but a zone outage cuts the others' egress). false: one per zone."
  type        = bool
  default     = false
}

variable "eks_cluster_name" {
  description = "EKS cluster whose load balancers may use these subnets (tags kubernetes.io/cluster/<name>); null: no such tag."
  type        = string
  default     = null
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) served by both HTTPS listeners of the collector's load balancer."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listeners (TLS 1.2 and 1.3 only by default)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "alb_internal" {
  description = "Internal (true, the default: reachable from the VPC and whatever is peered or routed to it) or internet-facing load balancer."
  type        = bool
  default     = true
}

variable "alb_deletion_protection" {
  description = "Refuse to delete the load balancer until this is turned off."
  type        = bool
  default     = true
}

variable "api_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to the HTTPS listener on 443 (HTTP API and dashboard). Empty: the VPC's own CIDR."
  type        = list(string)
  default     = []
}

variable "agent_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to the gRPC listener (agents). Empty: the VPC's own CIDR (agents on this VPC's EKS nodes)."
  type        = list(string)
  default     = []
}

variable "grpc_listener_port" {
  description = "Port of the HTTPS listener that forwards gRPC from agents to the collector."
  type        = number
  default     = 50051

  validation {
    condition     = var.grpc_listener_port != 443 && var.grpc_listener_port > 0 && var.grpc_listener_port < 65536
    error_message = "grpc_listener_port must be a TCP port other than 443 (443 serves the HTTP API)."
  }
}

variable "collector_http_port" {
  description = "Port the collector's HTTP API listens on inside its task (GPUCOST_HTTP_ADDR)."
  type        = number
  default     = 8080
}

variable "collector_grpc_port" {
  description = "Port the collector's gRPC ingest listens on inside its task (GPUCOST_GRPC_ADDR)."
  type        = number
  default     = 50051
}

variable "access_log_retention_days" {
  description = "Days the load balancer's access logs are kept in their S3 bucket."
  type        = number
  default     = 365
}

variable "waf_web_acl_arn" {
  description = "Regional AWS WAF web ACL to associate with the load balancer; null: none (see docs/deploy-aws.md)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

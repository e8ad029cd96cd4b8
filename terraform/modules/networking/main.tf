# The network gpucost runs in: a VPC with public and private subnets over several zones, NAT for the private
# ones, and the collector's Application Load Balancer with two HTTPS listeners — 443 for the HTTP API and the
# dashboard, grpc_listener_port for the agents' gRPC streams (target group protocol_version GRPC).

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Read only to default availability_zones; the first az_count names (sorted) are taken, so a zone AWS adds later does not change the set. prod.tfvars pins availability_zones.
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  azs = length(var.availability_zones) > 0 ? var.availability_zones : slice(sort(data.aws_availability_zones.available.names), 0, var.az_count)

  # /16 → public /22s inside the first /19, private /19s after it (8190 addresses per zone for EKS pods).
  public_cidrs  = [for i, _ in local.azs : cidrsubnet(cidrsubnet(var.vpc_cidr, 3, 0), 3, i)]
  private_cidrs = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 3, i + 1)]

  nat_count = var.single_nat_gateway ? 1 : length(local.azs)

  api_cidrs   = length(var.api_ingress_cidrs) > 0 ? var.api_ingress_cidrs : [var.vpc_cidr]
  agent_cidrs = length(var.agent_ingress_cidrs) > 0 ? var.agent_ingress_cidrs : [var.vpc_cidr]

  cluster_tag = var.eks_cluster_name == null ? {} : { "kubernetes.io/cluster/${var.eks_cluster_name}" = "shared" }

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

# ---------------------------------------------------------------------------------------------------------------
# VPC, subnets, routes
# ---------------------------------------------------------------------------------------------------------------

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(var.tags, { Name = var.name })
}

# The default security group allows nothing: every resource here gets its own group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.this.id
  availability_zone       = local.azs[count.index]
  cidr_block              = local.public_cidrs[count.index]
  map_public_ip_on_launch = false

  tags = merge(var.tags, local.cluster_tag, {
    Name                     = "${var.name}-public-${local.azs[count.index]}"
    Tier                     = "public"
    "kubernetes.io/role/elb" = "1"
  })
}

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = local.private_cidrs[count.index]

  tags = merge(var.tags, local.cluster_tag, {
    Name                              = "${var.name}-private-${local.azs[count.index]}"
    Tier                              = "private"
    "kubernetes.io/role/internal-elb" = "1"
  })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count = length(local.azs)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count = local.nat_count

  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat-${local.azs[count.index]}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  count = local.nat_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(var.tags, { Name = "${var.name}-${local.azs[count.index]}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count = length(local.azs)

  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_route" "private_nat" {
  count = length(local.azs)

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[var.single_nat_gateway ? 0 : count.index].id
}

resource "aws_route_table_association" "private" {
  count = length(local.azs)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# ---------------------------------------------------------------------------------------------------------------
# VPC flow logs (encrypted CloudWatch log group)
# ---------------------------------------------------------------------------------------------------------------

module "logs_key" {
  source = "../logs-kms-key"

  description = "${var.name}: VPC flow logs"
  alias       = "${var.name}-network-logs"
  tags        = var.tags
}

moved {
  from = aws_kms_key.logs
  to   = module.logs_key.aws_kms_key.this
}

moved {
  from = aws_kms_alias.logs
  to   = module.logs_key.aws_kms_alias.this
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/aws/vpc/${var.name}/flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = module.logs_key.arn
  tags              = var.tags
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name_prefix        = "${var.name}-flow-logs-"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
  tags                 = merge(var.tags, { Name = var.name })
}

# ---------------------------------------------------------------------------------------------------------------
# The collector's load balancer
# ---------------------------------------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-"
  description = "gpucost collector load balancer: HTTPS API on 443, agents' gRPC on ${var.grpc_listener_port}"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_api" {
  for_each = toset(local.api_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS API and dashboard"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_grpc" {
  for_each = toset(local.agent_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "gRPC over TLS from gpucost agents"
  ip_protocol       = "tcp"
  from_port         = var.grpc_listener_port
  to_port           = var.grpc_listener_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_collector_http" {
  security_group_id = aws_security_group.alb.id
  description       = "To the collector tasks' HTTP API"
  ip_protocol       = "tcp"
  from_port         = var.collector_http_port
  to_port           = var.collector_http_port
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_vpc_security_group_egress_rule" "alb_to_collector_grpc" {
  security_group_id = aws_security_group.alb.id
  description       = "To the collector tasks' gRPC ingest"
  ip_protocol       = "tcp"
  from_port         = var.collector_grpc_port
  to_port           = var.collector_grpc_port
  cidr_ipv4         = var.vpc_cidr
}

# Access logs: ALB log delivery writes with SSE-S3 only (it cannot use a KMS key).
resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_18:This bucket is the access-log destination itself; logging it would recurse.
  #checkov:skip=CKV_AWS_144:Access logs are kept in-region; cross-region replication is the operator's choice, not a default.
  #checkov:skip=CKV_AWS_145:Elastic Load Balancing delivers access logs only to SSE-S3 (AES256) buckets, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for access-log objects.
  bucket_prefix = "${var.name}-alb-logs-"
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

#trivy:ignore:AVD-AWS-0132 Elastic Load Balancing delivers access logs only to SSE-S3 (AES256) buckets, not SSE-KMS.
resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_elb_service_account" "this" {}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    sid       = "ElbLogDeliveryLegacyRegions"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }

  statement {
    sid       = "ElbLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.alb_logs.arn, "${aws_s3_bucket.alb_logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  policy = data.aws_iam_policy_document.alb_logs.json

  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}

resource "aws_lb" "collector" {
  #checkov:skip=CKV2_AWS_28:A WAF web ACL is attached when waf_web_acl_arn is set; the default load balancer is internal (alb_internal = true).
  name                       = "${var.name}-collector"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_internal ? aws_subnet.private[*].id : aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  idle_timeout               = 300 # agents hold one long-lived gRPC stream each
  desync_mitigation_mode     = "strictest"

  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    prefix  = "collector"
    enabled = true
  }

  tags = merge(var.tags, { Name = "${var.name}-collector" })

  depends_on = [aws_s3_bucket_policy.alb_logs]
}

resource "aws_wafv2_web_acl_association" "collector" {
  count = var.waf_web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.collector.arn
  web_acl_arn  = var.waf_web_acl_arn
}

# The HTTP API and the dashboard. /readyz answers 200 once the ledger is open and migrated (no token needed).
resource "aws_lb_target_group" "http" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer for the API; the collector serves its HTTP API without TLS, inside the VPC, to the load balancer's security group only. Requests still carry bearer tokens.
  name                 = "${var.name}-http"
  port                 = var.collector_http_port
  protocol             = "HTTP"
  protocol_version     = "HTTP1"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

# Agents' gRPC streams, TLS on both legs: the listener serves the ACM certificate to agents, and the ALB speaks
# HTTP/2 over TLS to the tasks (the collector refuses plain-text gRPC outside --insecure; the ALB does not verify
# the tasks' certificate, so the ECS module gives them a generated one). The health check is a gRPC call the
# collector does not implement: tonic answers UNIMPLEMENTED (grpc-status 12), which proves the gRPC server is up and
# serving TLS; the ledger's readiness is checked by the HTTP target group's /readyz on the same tasks.
resource "aws_lb_target_group" "grpc" {
  name                 = "${var.name}-grpc"
  port                 = var.collector_grpc_port
  protocol             = "HTTPS"
  protocol_version     = "GRPC"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 60

  health_check {
    enabled             = true
    protocol            = "HTTPS"
    port                = "traffic-port"
    path                = "/AWS.ALB/healthcheck"
    matcher             = "12"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https_api" {
  load_balancer_arn = aws_lb.collector.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.http.arn
  }

  tags = var.tags
}

resource "aws_lb_listener" "https_grpc" {
  load_balancer_arn = aws_lb.collector.arn
  port              = var.grpc_listener_port
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc.arn
  }

  tags = var.tags
}

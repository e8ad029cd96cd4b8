# The small-fleet alternative: the collector keeps its SQLite ledger on EFS (one task, one writer) with AWS
# Backup, two zones, one NAT gateway, one GPU node group. This is the layout today's collector runs in (its
# PostgreSQL backend is a separate issue).
#
#   terraform plan -var-file=examples/small-fleet.tfvars

name        = "gpucost"
environment = "staging"
region      = "eu-west-1"

vpc_cidr           = "10.41.0.0/16"
availability_zones = ["eu-west-1a", "eu-west-1b"]
single_nat_gateway = true

certificate_arn = "arn:aws:acm:eu-west-1:111122223333:certificate/1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
alb_internal    = true

system_node_group = {
  instance_types = ["m7i.large"]
  min_size       = 2
  max_size       = 3
  desired_size   = 2
}

gpu_node_groups = [
  {
    name           = "l4"
    instance_types = ["g6.xlarge"]
    min_size       = 0
    max_size       = 4
    desired_size   = 1
  },
]

collector_image = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/gpucost-collector:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
ledger          = "sqlite-efs"

github_repository = "acme/gpucost"

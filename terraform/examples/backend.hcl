# terraform init -backend-config=examples/backend.hcl — an S3 bucket you already have, with versioning on.
bucket       = "acme-terraform-state"
key          = "gpucost/prod/terraform.tfstate"
region       = "us-east-1"
encrypt      = true
kms_key_id   = "alias/terraform-state"
use_lockfile = true # S3-native state locking (Terraform >= 1.10); use dynamodb_table on older versions

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x; access entries, EKS Pod Identity and the AL2023 NVIDIA AMI type need a recent 5.x.
      version = "~> 5.0, >= 5.82"
    }
  }
}

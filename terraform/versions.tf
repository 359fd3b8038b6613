terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  # null: the region of the AWS configuration chain (AWS_REGION, or the profile's).
  region = var.region

  default_tags {
    tags = merge({ Project = var.name, ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.region
  partition  = data.aws_partition.current.partition

  # Names of the things made here. Glue and Athena names take no dashes.
  glue_database = replace(var.name, "-", "_")
  lake_prefix   = trim(var.lake_prefix, "/")
  lake_url      = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}"
}

# The lake's bucket: the Parquet tables, quarantine and the consumer's state under lake_prefix,
# and Athena's query results beside them under athena-results/.

locals {
  athena_results_prefix = "athena-results"
}

resource "aws_s3_bucket" "lake" {
  # checkov:skip=CKV_AWS_18:Server access logs need a second bucket to secure and pay for; CloudTrail data events are the audit trail to turn on where one is required.
  # checkov:skip=CKV_AWS_144:Cross-region replication doubles the storage bill; versioning guards against deletes, and an organisation that needs a second region adds a replication rule.
  # checkov:skip=CKV2_AWS_62:Nothing consumes the bucket's events: the stream drives the function, and partition projection means no crawler waits for new files.
  bucket_prefix = "${var.name}-"
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    # One data key per bucket instead of one KMS request per object.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  # Versioning must be on before rules about noncurrent versions apply.
  depends_on = [aws_s3_bucket_versioning.lake]

  rule {
    id     = "quarantine-expires"
    status = "Enabled"
    filter {
      prefix = "${local.lake_prefix}/quarantine/"
    }
    expiration {
      days = var.quarantine_retention_days
    }
  }

  rule {
    id     = "athena-results-expire"
    status = "Enabled"
    filter {
      prefix = "${local.athena_results_prefix}/"
    }
    expiration {
      days = var.athena_results_retention_days
    }
  }

  rule {
    # Every batch rewrites its shard's state object and compaction deletes small files: the
    # versions they leave behind are kept for a while to undo a mistake, then removed.
    id     = "old-versions-and-uploads-expire"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_retention_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake_bucket.json
  # The public access block first: a policy put before it could be judged public.
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

data "aws_iam_policy_document" "lake_bucket" {
  statement {
    sid     = "DenyPlainHTTP"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
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

  statement {
    sid     = "DenyOldTLS"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

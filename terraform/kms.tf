# One customer managed key encrypts everything at rest here: the stream, the lake, the function's
# settings and logs, the failures queue, the alarm topic and Athena's results. One key is one
# policy to read and $1 a month; the lake's S3 Bucket Key keeps its requests to the key few.

resource "aws_kms_key" "lake" {
  description             = "${var.name}: stream, lake, logs, queue, topic and query results"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.lake.key_id
}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource is always "*": it means this key only.
  # checkov:skip=CKV_AWS_111:A key policy's Resource is always "*": it means this key only.
  # checkov:skip=CKV_AWS_356:A key policy's Resource is always "*": it means this key only.

  statement {
    sid       = "AccountAdministersTheKeyAndGrantsItThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsTheFunctionLog"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.name}-*"]
    }
  }

  statement {
    # Alarms publish to the encrypted topic as CloudWatch, not as a role of this account.
    sid       = "CloudWatchAlarmsPublishToTheTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

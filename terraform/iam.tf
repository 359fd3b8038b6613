# The function's role: this stream, this bucket's lake prefix, this key, this queue, its own
# log group, and for reports this workgroup, this catalog and this topic; nothing else.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "consumer" {
  name               = "${var.name}-consumer"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "consumer" {
  name   = "consumer"
  role   = aws_iam_role.consumer.id
  policy = data.aws_iam_policy_document.consumer.json
}

data "aws_iam_policy_document" "consumer" {
  statement {
    sid = "ReadTheStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.sales.arn]
  }

  statement {
    sid       = "ReadAndWriteTheLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }

  statement {
    # The consumer lists its state and a day's files under the lake prefix. HeadBucket, which it
    # sends once at start to check the bucket, is authorised as ListBucket without a prefix: hence
    # IfExists.
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      # Athena lists the workgroup's results location for the report queries.
      values = ["${local.lake_prefix}/*", "${local.athena_results_prefix}/*"]
    }
  }

  statement {
    # Athena checks the region of the results bucket before a report query runs.
    sid       = "LocateTheResults"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    # Kinesis records, lake objects and queue messages are encrypted with the deployment's key.
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
  }

  statement {
    # The `report` action: queries/daily_sales_by_country.sql on Athena, in the lake's
    # workgroup, over the lake's tables; its results go to the workgroup's location.
    sid = "RunReportQueries"
    actions = [
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StopQueryExecution",
      "athena:GetWorkGroup",
    ]
    resources = [aws_athena_workgroup.lake.arn]
  }

  statement {
    sid     = "ReadTheCatalog"
    actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      aws_glue_catalog_database.lake.arn,
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.lake.name}/*",
    ]
  }

  statement {
    sid       = "WriteQueryResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.athena_results_prefix}/*"]
  }

  statement {
    sid       = "PublishReports"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.reports.arn]
  }

  statement {
    sid       = "ReportFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures.arn]
  }

  statement {
    # At cold start the function checks that no Kinesis mapping of it runs a shard's batches in
    # parallel (it would skip records). The action has no resource-level permissions: AWS allows
    # only "*" here, and it reads mapping settings, nothing else.
    sid       = "CheckItsMappings"
    actions   = ["lambda:ListEventSourceMappings"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteItsLog"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function.arn}:*"]
  }
}

# Policies for the people who use the deployment, to attach to their users or roles: one to
# stream files in, one to query the lake on Athena.

resource "aws_iam_policy" "producer" {
  name        = "${var.name}-producer"
  description = "Stream sales files into ${aws_kinesis_stream.sales.name} with the producer"
  policy      = data.aws_iam_policy_document.producer.json
}

data "aws_iam_policy_document" "producer" {
  statement {
    actions = [
      "kinesis:DescribeStreamSummary",
      "kinesis:ListShards",
      "kinesis:PutRecord",
      "kinesis:PutRecords",
    ]
    resources = [aws_kinesis_stream.sales.arn]
  }
  statement {
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_policy" "analyst" {
  name        = "${var.name}-analyst"
  description = "Query the lake at ${local.lake_url} on Athena (consumer query, the console)"
  policy      = data.aws_iam_policy_document.analyst.json
}

data "aws_iam_policy_document" "analyst" {
  statement {
    sid = "RunQueriesInTheWorkgroup"
    actions = [
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StopQueryExecution",
      "athena:GetWorkGroup",
      "athena:ListNamedQueries",
      "athena:GetNamedQuery",
      "athena:BatchGetNamedQuery",
      "athena:ListQueryExecutions",
    ]
    resources = [aws_athena_workgroup.lake.arn]
  }
  statement {
    sid     = "ReadTheCatalog"
    actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      aws_glue_catalog_database.lake.arn,
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.lake.name}/*",
    ]
  }
  statement {
    sid       = "ReadTheTables"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }
  statement {
    sid       = "ListTheTables"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "WriteQueryResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.athena_results_prefix}/*"]
  }
  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

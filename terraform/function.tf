# The consumer function: Kinesis batches in, the lake out; and once a day, compaction.

locals {
  function_name = "${var.name}-consumer"
}

resource "aws_cloudwatch_log_group" "function" {
  # checkov:skip=CKV_AWS_338:The log holds operational messages and metrics, not audit records; 30 days by default keeps its cost down (log_retention_days sets a year where required).
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.lake.arn
}

resource "aws_lambda_function" "consumer" {
  # checkov:skip=CKV_AWS_117:The function talks only to AWS APIs (Kinesis, S3, KMS, SQS); inside a VPC it would need a NAT gateway or endpoints, about $7 a month each, for no gain.
  # checkov:skip=CKV_AWS_272:The zip is built from this repository by `make deploy`; code signing needs an AWS Signer profile and a signing step outside this build.
  # checkov:skip=CKV_AWS_115:The event source mapping already bounds concurrency to one invocation per shard (ParallelizationFactor 1, which the commit protocol needs); reserving concurrency fails on new accounts, whose unreserved pool is 10.
  function_name = local.function_name
  description   = "Kinesis sales events to the Parquet lake at ${local.lake_url}; compacts a day on schedule; writes reports"
  role          = aws_iam_role.consumer.arn

  filename = var.lambda_zip
  # A new zip is a new version. try(): `make destroy` works after `make clean` removed the zip.
  source_code_hash = try(filebase64sha256(var.lambda_zip), null)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = var.lambda_memory_mb
  timeout          = var.lambda_timeout_seconds

  environment {
    variables = {
      LAKE_URL         = local.lake_url
      RUST_LOG         = "info"
      ATHENA_WORKGROUP = aws_athena_workgroup.lake.name
      ATHENA_DATABASE  = aws_glue_catalog_database.lake.name
      REPORT_TOPIC_ARN = aws_sns_topic.reports.arn
      # A report query is stopped before the invocation times out (a killed invocation could not
      # stop it, and it would go on scanning).
      QUERY_TIMEOUT = "${max(var.lambda_timeout_seconds - 30, 30)}s"
      # mimalloc keeps what a batch freed for the next one, instead of giving it back to the
      # system a second later: a warm instance waits longer than that between batches, and then
      # faulted in its ~50 MB afresh each time (measured in process on 10,000-record batches,
      # their memory given back between them: 12,600 page faults a batch, and a median of
      # 22.5-30.4 ms a batch against 19.2-22.6 ms with the memory kept). The function's memory
      # is reserved for it whether it holds the pages or not.
      MIMALLOC_PURGE_DELAY = "-1"
    }
  }
  kms_key_arn = aws_kms_key.lake.arn

  tracing_config {
    mode = "PassThrough"
  }

  # Compaction arrives asynchronously from EventBridge: when its retries fail, the event goes to
  # the failures queue, like a Kinesis batch that ran out of retries.
  dead_letter_config {
    target_arn = aws_sqs_queue.failures.arn
  }

  # The log group exists (with its retention and key) before the function can make its own.
  depends_on = [aws_iam_role_policy.consumer, aws_cloudwatch_log_group.function]
}

resource "aws_lambda_function_event_invoke_config" "consumer" {
  function_name                = aws_lambda_function.consumer.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}

resource "aws_lambda_event_source_mapping" "stream" {
  event_source_arn  = aws_kinesis_stream.sales.arn
  function_name     = aws_lambda_function.consumer.arn
  starting_position = var.starting_position

  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  # One invocation per shard at a time: the commit protocol commits a shard in order (the
  # variable refuses any other value).
  parallelization_factor = var.parallelization_factor

  # The function answers which record to resume from; a failing batch is halved to isolate the
  # record, retried a bounded number of times, and then its range goes to the failures queue.
  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = var.maximum_retry_attempts
  maximum_record_age_in_seconds  = var.maximum_record_age_seconds

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.failures.arn
    }
  }
}

resource "aws_sqs_queue" "failures" {
  # What could not be processed: for a Kinesis batch, its shard and sequence range (the records
  # stay in the stream for its retention); for a compaction, the event.
  name                      = "${var.name}-failures"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.lake.arn
}

# Compaction: the function reads the "Scheduled Event" and compacts every sale date a batch wrote
# since the last scheduled run (late events and backfills land on old days, not on yesterday).
resource "aws_cloudwatch_event_rule" "compaction" {
  name                = "${var.name}-compaction"
  description         = "Compacts the days of ${local.lake_url} written since the last run into one file per table"
  schedule_expression = var.compaction_schedule
}

resource "aws_cloudwatch_event_target" "compaction" {
  rule = aws_cloudwatch_event_rule.compaction.name
  arn  = aws_lambda_function.consumer.arn
}

resource "aws_lambda_permission" "compaction" {
  statement_id  = "AllowCompactionSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.consumer.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.compaction.arn
}

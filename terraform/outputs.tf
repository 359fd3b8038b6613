output "stream_name" {
  description = "The Kinesis stream to send sales to."
  value       = aws_kinesis_stream.sales.name
}

output "lake_url" {
  description = "The lake (LAKE_URL)."
  value       = local.lake_url
}

output "bucket" {
  description = "The lake's bucket, which also holds Athena's results under athena-results/."
  value       = aws_s3_bucket.lake.bucket
}

output "function_name" {
  description = "The consumer function."
  value       = aws_lambda_function.consumer.function_name
}

output "log_group" {
  description = "The consumer function's log."
  value       = aws_cloudwatch_log_group.function.name
}

output "athena_workgroup" {
  description = "The Athena workgroup (ATHENA_WORKGROUP)."
  value       = aws_athena_workgroup.lake.name
}

output "glue_database" {
  description = "The Glue database with sales_events, daily_sales, customer_sales and regions (ATHENA_DATABASE)."
  value       = aws_glue_catalog_database.lake.name
}

output "report_topic_arn" {
  description = "Where the function publishes the location of each report (REPORT_TOPIC_ARN)."
  value       = aws_sns_topic.reports.arn
}

output "failures_queue_url" {
  description = "Batches and compactions that ran out of retries."
  value       = aws_sqs_queue.failures.url
}

output "alarm_topic_arn" {
  description = "The SNS topic alarms go to; subscribe more endpoints to it."
  value       = aws_sns_topic.alarms.arn
}

output "producer_policy_arn" {
  description = "Attach to whoever streams files in."
  value       = aws_iam_policy.producer.arn
}

output "analyst_policy_arn" {
  description = "Attach to whoever queries the lake."
  value       = aws_iam_policy.analyst.arn
}

output "try_it" {
  description = "Commands to stream a file and query the result."
  value       = <<-EOT
    target/debug/producer --input sales.csv --stream kinesis://${aws_kinesis_stream.sales.name}
    ATHENA_WORKGROUP=${aws_athena_workgroup.lake.name} ATHENA_DATABASE=${aws_glue_catalog_database.lake.name} \
      target/debug/consumer query --lake ${local.lake_url} --file queries/top_products_by_country.sql
  EOT
}

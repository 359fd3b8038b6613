# Reports: the function's `report` action writes one country's daily sales as a CSV under
# {lake}/reports/ and publishes its location here (README: "Reports").

resource "aws_sns_topic" "reports" {
  name              = "${var.name}-reports"
  kms_master_key_id = aws_kms_key.lake.arn
}

resource "aws_sns_topic_subscription" "report_email" {
  count     = var.report_email == null ? 0 : 1
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "email"
  endpoint  = var.report_email
}

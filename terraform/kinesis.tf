resource "aws_kinesis_stream" "sales" {
  name             = "${var.name}-events"
  retention_period = var.stream_retention_hours
  # On-demand has no shard count: Kinesis splits and merges shards by itself.
  shard_count = var.stream_mode == "PROVISIONED" ? var.stream_shard_count : null

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  encryption_type = "KMS"
  kms_key_id      = aws_kms_key.lake.arn
}

variable "name" {
  description = "Prefix of every resource name (stream, function, queue, topic, workgroup; the Glue database is this with underscores)."
  type        = string
  default     = "sales-lake"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name: 3 to 31 lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy to. null: the region of your AWS configuration (AWS_REGION or the profile)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource, beside Project and ManagedBy."
  type        = map(string)
  default     = {}
}

variable "lambda_zip" {
  description = "The function's zip, as `make lambda` builds it (make deploy passes it)."
  type        = string
  default     = "../target/lambda/consumer-lambda/bootstrap.zip"
}

# --- Stream ---

variable "stream_mode" {
  description = "ON_DEMAND (pay per GB, scales by itself; the default) or PROVISIONED (pay per shard-hour, set stream_shard_count)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode: ON_DEMAND or PROVISIONED."
  }
}

variable "stream_shard_count" {
  description = "Shards of a PROVISIONED stream (each takes 1 MiB/s or 1,000 records/s in)."
  type        = number
  default     = 1
}

variable "stream_retention_hours" {
  description = "How long the stream keeps records (24 is included in the price; up to 8760 costs extra). Failed batches must be replayed within it."
  type        = number
  default     = 24
}

# --- Lake ---

variable "lake_prefix" {
  description = "The lake's prefix in its bucket: LAKE_URL is s3://<bucket>/<lake_prefix>."
  type        = string
  default     = "sales"
}

variable "force_destroy" {
  description = "Let `make destroy` delete the bucket with the lake in it (every version). Set false to keep the data: destroy then stops at the non-empty bucket."
  type        = bool
  default     = true
}

variable "quarantine_retention_days" {
  description = "Days quarantined records are kept before they expire."
  type        = number
  default     = 90
}

variable "athena_results_retention_days" {
  description = "Days Athena query results are kept before they expire."
  type        = number
  default     = 7
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted object version is kept (the state objects are rewritten every batch, compaction deletes small files)."
  type        = number
  default     = 7
}

variable "partition_years" {
  description = "First and last year Athena's partition projection covers, as \"FIRST,LAST\". Queries without a date filter list every projected day, so keep the range tight."
  type        = string
  default     = "2009,2030"

  validation {
    condition     = can(regex("^[0-9]{4},[0-9]{4}$", var.partition_years))
    error_message = "partition_years: \"YYYY,YYYY\"."
  }
}

# --- Function ---

variable "lambda_memory_mb" {
  description = "Memory of the function (CPU grows with it). 1024 MB decodes and writes a 10,000-record batch in well under a second."
  type        = number
  default     = 1024
}

variable "lambda_timeout_seconds" {
  description = "Longest run of one invocation: a batch, or the compaction of a day."
  type        = number
  default     = 300
}

variable "log_retention_days" {
  description = "Days the function's logs are kept."
  type        = number
  default     = 30
}

variable "batch_size" {
  description = "Most records per invocation (Kinesis allows up to 10,000; aggregated records hold many events each)."
  type        = number
  default     = 10000
}

variable "parallelization_factor" {
  description = "Concurrent batches per shard. Must be 1: the consumer commits each shard's records in order, and with more lanes a batch's records at or before another lane's commit would be skipped (the function also refuses to run under a mapping set higher)."
  type        = number
  default     = 1

  validation {
    condition     = var.parallelization_factor == 1
    error_message = "parallelization_factor must be 1: the consumer commits each shard in order. For more throughput add shards (or use an on-demand stream), not lanes per shard."
  }
}

variable "batching_window_seconds" {
  description = "Longest wait to fill a batch. Longer means fewer, larger files in the lake and fewer invocations."
  type        = number
  default     = 15
}

variable "starting_position" {
  description = "Where the function starts on a new stream: TRIM_HORIZON (everything kept) or LATEST."
  type        = string
  default     = "TRIM_HORIZON"

  validation {
    condition     = contains(["TRIM_HORIZON", "LATEST"], var.starting_position)
    error_message = "starting_position: TRIM_HORIZON or LATEST."
  }
}

variable "maximum_retry_attempts" {
  description = "Retries of a failing batch (halved on each error) before its range goes to the failures queue."
  type        = number
  default     = 20
}

variable "maximum_record_age_seconds" {
  description = "Records older than this are not retried but sent to the failures queue; keep it well under the stream retention so they can still be replayed."
  type        = number
  default     = 21600
}

variable "compaction_schedule" {
  description = "When the days written since the last run are compacted into one file per table (EventBridge schedule expression, UTC)."
  type        = string
  default     = "cron(30 1 * * ? *)"
}

# --- Query ---

variable "athena_bytes_scanned_cutoff" {
  description = "A query scanning more than this many bytes is cancelled (a guard on cost: Athena charges per TB scanned)."
  type        = number
  default     = 10737418240
}

# --- Reports ---

variable "report_email" {
  description = "An e-mail address told where each report is (it receives a confirmation mail first). null: the SNS topic only."
  type        = string
  default     = null
}

# --- Alarms ---

variable "alarm_email" {
  description = "An e-mail address told of alarms (it receives a confirmation mail first). null: the SNS topic only."
  type        = string
  default     = null
}

variable "iterator_age_alarm_seconds" {
  description = "Alarm when the oldest unprocessed record is older than this."
  type        = number
  default     = 600
}

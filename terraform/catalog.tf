# The lake's tables in the Glue catalog, for Athena. The columns are the Parquet schema the
# consumer writes (consumer/src/core/writer.rs); a test in `make test` compares the two, so they
# cannot drift apart. Partitions are projected from the path (year=YYYY/month=MM/day=DD), so no
# crawler and no MSCK REPAIR is ever needed.

locals {
  lake_tables = {
    sales_events = {
      description = "One row per accepted sales event, partitioned by the sale's date."
      columns = [
        { name = "event_id", type = "string", comment = "UUID v5 of the source file and line: the same line always has the same id" },
        { name = "event_time", type = "timestamp", comment = "When the sale happened (local time, no zone)" },
        { name = "invoice_no", type = "string", comment = "Invoice number; C... is a cancellation" },
        { name = "stock_code", type = "string", comment = "Product code" },
        { name = "description", type = "string", comment = "Product description (may be null)" },
        { name = "quantity", type = "bigint", comment = "Units; negative for returns and write-offs" },
        { name = "unit_price", type = "decimal(18,3)", comment = "Price per unit" },
        { name = "customer_id", type = "string", comment = "Customer (null when unknown)" },
        { name = "country", type = "string", comment = "Customer's country" },
        { name = "source", type = "string", comment = "Source file and line" },
        { name = "shard_id", type = "string", comment = "Kinesis shard the event came through" },
        { name = "sequence_number", type = "string", comment = "Kinesis sequence number of its record" },
        { name = "arrival_time", type = "timestamp", comment = "When the record reached the stream (UTC)" },
      ]
    }
    daily_sales = {
      description = "Daily sales per country and product: one row per key per file; SUM across files, or read a compacted day."
      columns = [
        { name = "sale_date", type = "date", comment = "Date of the sales" },
        { name = "country", type = "string", comment = "Customer's country" },
        { name = "stock_code", type = "string", comment = "Product code" },
        { name = "description", type = "string", comment = "A non-empty description seen that day (null if none)" },
        { name = "units_sold", type = "bigint", comment = "Sum of positive quantities" },
        { name = "units_returned", type = "bigint", comment = "Sum of -quantity over negative quantities" },
        { name = "net_quantity", type = "bigint", comment = "Sum of quantity" },
        { name = "gross_revenue", type = "decimal(38,3)", comment = "Sum of quantity x unit_price over positive quantities" },
        { name = "refunds", type = "decimal(38,3)", comment = "Sum of -(quantity x unit_price) over negative quantities" },
        { name = "net_revenue", type = "decimal(38,3)", comment = "Sum of quantity x unit_price" },
        { name = "order_lines", type = "bigint", comment = "Number of events" },
      ]
    }
    customer_sales = {
      description = "Sales per customer, country and invoice by day: one row per key per file; orders are COUNT(DISTINCT invoice_no), the rest SUMs."
      columns = [
        { name = "sale_date", type = "date", comment = "Date of the sales" },
        { name = "customer_id", type = "string", comment = "Customer; empty for lines without one" },
        { name = "country", type = "string", comment = "Customer's country" },
        { name = "invoice_no", type = "string", comment = "Invoice (one order); C... is a cancellation" },
        { name = "units_sold", type = "bigint", comment = "Sum of positive quantities" },
        { name = "units_returned", type = "bigint", comment = "Sum of -quantity over negative quantities" },
        { name = "net_quantity", type = "bigint", comment = "Sum of quantity" },
        { name = "gross_revenue", type = "decimal(38,3)", comment = "Sum of quantity x unit_price over positive quantities" },
        { name = "refunds", type = "decimal(38,3)", comment = "Sum of -(quantity x unit_price) over negative quantities" },
        { name = "net_revenue", type = "decimal(38,3)", comment = "Sum of quantity x unit_price" },
        { name = "order_lines", type = "bigint", comment = "Number of events" },
      ]
    }
  }

  # The country -> region reference (reference/regions.csv), one CSV object in the lake.
  regions_columns = [
    { name = "country", type = "string", comment = "Country as the sales name it" },
    { name = "region", type = "string", comment = "UN M49 region" },
    { name = "sub_region", type = "string", comment = "UN M49 sub-region" },
  ]

  # Integers, as the local engine reads them too; month and day are zero-padded in the path.
  partition_keys = [
    { name = "year", type = "int", comment = "Year of the sale" },
    { name = "month", type = "int", comment = "Month of the sale (path: two digits)" },
    { name = "day", type = "int", comment = "Day of the sale (path: two digits)" },
  ]
}

resource "aws_glue_catalog_database" "lake" {
  name        = local.glue_database
  description = "The sales lake at ${local.lake_url}"
}

resource "aws_glue_catalog_table" "lake" {
  for_each = local.lake_tables

  database_name = aws_glue_catalog_database.lake.name
  name          = each.key
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "EXTERNAL"                  = "TRUE"
    "classification"            = "parquet"
    "projection.enabled"        = "true"
    "projection.year.type"      = "integer"
    "projection.year.range"     = var.partition_years
    "projection.month.type"     = "integer"
    "projection.month.range"    = "1,12"
    "projection.month.digits"   = "2"
    "projection.day.type"       = "integer"
    "projection.day.range"      = "1,31"
    "projection.day.digits"     = "2"
    "storage.location.template" = "${local.lake_url}/${each.key}/year=$${year}/month=$${month}/day=$${day}"
  }

  dynamic "partition_keys" {
    for_each = local.partition_keys
    content {
      name    = partition_keys.value.name
      type    = partition_keys.value.type
      comment = partition_keys.value.comment
    }
  }

  storage_descriptor {
    location      = "${local.lake_url}/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}

# The reference table as Athena reads it: the CSV the consumer and `consumer regions` write,
# header skipped. Uploaded here so a new lake has it before the first batch.
resource "aws_glue_catalog_table" "regions" {
  database_name = aws_glue_catalog_database.lake.name
  name          = "regions"
  description   = "Country -> UN M49 region and sub-region (reference/regions.csv, or your own via consumer regions)."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "EXTERNAL"               = "TRUE"
    "classification"         = "csv"
    "skip.header.line.count" = "1"
  }

  storage_descriptor {
    location      = "${local.lake_url}/regions/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      name                  = "csv"
      serialization_library = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
      parameters = {
        "separatorChar" = ","
        "quoteChar"     = "\""
      }
    }

    dynamic "columns" {
      for_each = local.regions_columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}

# Written once; `consumer regions --file` replaces it with the user's own, which a later apply
# leaves alone (every attribute ignored: the object as written by the consumer differs from this
# one in more than its content).
resource "aws_s3_object" "regions" {
  bucket       = aws_s3_bucket.lake.id
  key          = "${local.lake_prefix}/regions/regions.csv"
  source       = "${path.module}/../reference/regions.csv"
  content_type = "text/csv"
  kms_key_id   = aws_kms_key.lake.arn

  lifecycle {
    ignore_changes = all
  }
}

resource "aws_athena_workgroup" "lake" {
  name        = var.name
  description = "Queries over the sales lake at ${local.lake_url}"
  # Saved queries and query history go with the workgroup on `make destroy`.
  force_destroy = true

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/${local.athena_results_prefix}/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.lake.arn
      }
    }
  }
}

# The SQL in queries/ as saved queries: the same text runs locally (`consumer query --file`) and
# here; the console asks for the values of its `?` parameters.
resource "aws_athena_named_query" "lake" {
  for_each = fileset("${path.module}/../queries", "*.sql")

  name        = trimsuffix(each.value, ".sql")
  description = "queries/${each.value}"
  workgroup   = aws_athena_workgroup.lake.id
  database    = aws_glue_catalog_database.lake.name
  query       = file("${path.module}/../queries/${each.value}")
}

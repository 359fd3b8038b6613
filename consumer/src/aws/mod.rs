//! The AWS adapters, each behind one of the consumer's traits or commands: Kinesis as a
//! [`crate::stream::ShardSource`] and [`crate::stream::Lineage`] ([`kinesis`]), S3 as a
//! [`crate::lake::Lake`] ([`s3`]), Athena for `consumer query` and reports on an S3 lake
//! ([`athena`]), SNS for the function's report notices ([`sns`]), and the Lambda API to check
//! the function's event source mappings ([`mapping`]).

pub mod athena;
pub mod kinesis;
pub mod mapping;
pub mod s3;
pub mod sns;

//! The pure, synchronous core: a batch of stream records in, the lake files to write out.
//!
//! [`batch`] decodes and validates records, drops duplicates and quarantines what it cannot
//! accept ([`quarantine`]); [`aggregate`] sums daily sales exactly; [`writer`] encodes both
//! tables as Parquet; [`layout`] names every object in the lake. Nothing here does I/O.

pub mod aggregate;
pub mod batch;
pub mod layout;
pub mod quarantine;
pub mod regions;
pub mod sql;
pub mod writer;

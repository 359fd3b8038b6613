//! The exactly-once commit protocol over a [`crate::lake::Lake`] (see DESIGN.md, "Exactly once").
//!
//! A shard's [`state`] holds its committed position and the manifest of its exact id
//! [`index`]; a [`checkpoint`] loads it, runs the core batch step against the index, writes the
//! files and commits the state with a compare-and-swap. [`compact`] rewrites days under the same
//! rules, so a compacted day still holds each event once.

pub mod checkpoint;
pub mod compact;
pub mod index;
pub mod state;

pub use checkpoint::{Checkpoint, CommitError, Committed};

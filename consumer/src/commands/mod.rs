//! The `consumer` command line: [`options`] (clap) and [`app`] (one function per command), over
//! the long-running [`poll`] and [`replay`], [`status`], the reference table ([`regions`]), the
//! reconciliation ([`verify`]), the [`report`]s and the local [`query`] engine. [`store`] opens
//! the lake a URL names, local or S3.

pub mod app;
pub mod options;
pub mod output;
pub mod poll;
#[cfg(feature = "query")]
pub mod query;
pub mod regions;
pub mod replay;
pub mod report;
pub mod status;
pub mod store;
pub mod verify;

pub use app::run;

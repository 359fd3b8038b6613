//! Where notices go, as a narrow trait at the edge: the function publishes where each report is
//! through it; SNS's implementation is an AWS adapter ([`crate::aws::sns`]).

use std::future::Future;

/// A topic notices are published to: narrow, so the report action is tested without SNS.
pub trait Notifier: Send + Sync {
    /// Publishes one message; the error is the reason, for the logs.
    fn publish(
        &self,
        subject: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

//! The participant's calls to the coordinator: retries while the coordinator is unreachable
//! (it may still be starting), and refusals turned into [`ParticipantError::Refused`] with the
//! TLS reason under a failed connection.

use crate::node::ParticipantError;
use std::time::Duration;
use tonic::{Code, Status};

/// The error for a call `rpc` the coordinator refused (or that never reached it).
pub(crate) fn refused(rpc: &'static str) -> impl FnOnce(Status) -> ParticipantError {
    move |status| ParticipantError::Refused {
        rpc,
        code: status.code(),
        message: describe_status(&status),
    }
}
/// The status message, or for a failed connection the TLS reason under it (e.g. the
/// coordinator rejected this participant's certificate, or this participant the coordinator's),
/// which gRPC reports only as "transport error" or as rustls's debug text.
pub fn describe_status(status: &Status) -> String {
    match connection_error(status) {
        Some(io) => format!(
            "cannot connect: {}",
            accord_crypto::tls::describe_handshake_error(io)
        ),
        None => status.message().to_owned(),
    }
}

/// The I/O error under a failed connection's status, if any.
fn connection_error(status: &Status) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = error.source();
    }
    None
}

/// Retries a call while the coordinator is unreachable (it may still be starting) or too busy to
/// finish the connection within the channel's connect timeout, for up to a minute; not when a
/// certificate was refused at the handshake, which a retry cannot change.
pub(crate) async fn retry_transient<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut wait = Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status) if transient(&status) && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Whether a failed call may succeed if made again: the coordinator was unreachable, or the
/// connection (TCP and TLS handshake) did not finish within the connect timeout, which tonic
/// reports with code Unknown. A certificate refusal is final.
fn transient(status: &Status) -> bool {
    match connection_error(status) {
        Some(io) if accord_crypto::tls::is_certificate_refusal(io) => false,
        Some(io) if io.kind() == std::io::ErrorKind::TimedOut => true,
        _ => status.code() == Code::Unavailable,
    }
}

/// Runs CPU-bound work (loading the auditor's key material, local training, counting) without
/// stalling the other tasks of a multi-threaded runtime: their handshakes and keep-alives go on
/// meanwhile. On a single-threaded runtime, where that is impossible, it runs in place.
pub(crate) fn compute<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A failed connection as tonic reports it: the I/O error under the status.
    fn connection_failed(error: io::Error) -> Status {
        Status::from_error(Box::new(error))
    }

    /// Runs `retry_transient` over calls failing with `failure` `failures` times, then
    /// succeeding; returns the outcome and how many calls were made.
    async fn retried(failure: fn() -> Status, failures: u32) -> (Result<u32, Status>, u32) {
        let calls = AtomicU32::new(0);
        let outcome = retry_transient(|| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < failures {
                    Err(failure())
                } else {
                    Ok(call)
                }
            }
        })
        .await;
        (outcome, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_connection_that_timed_out_or_an_unreachable_coordinator_is_tried_again() {
        let timed_out = || {
            connection_failed(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline has elapsed",
            ))
        };
        let status = timed_out();
        assert_eq!(
            status.code(),
            Code::Unknown,
            "tonic's code for a timed-out connect"
        );
        assert_eq!(
            describe_status(&status),
            "cannot connect: the TCP connection and TLS handshake did not finish within the connect timeout"
        );
        assert_eq!(retried(timed_out, 3).await.0.unwrap(), 3);
        let unavailable = || Status::unavailable("connection refused");
        assert_eq!(retried(unavailable, 2).await.0.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_refused_certificate_or_call_is_final() {
        let (outcome, calls) = retried(|| Status::permission_denied("revoked"), 5).await;
        assert_eq!(outcome.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(calls, 1);
        // As a failed connection reaches the client: Unavailable, with the alert under it.
        let certificate_alert = || {
            let mut status = Status::unavailable("transport error");
            status.set_source(std::sync::Arc::new(io::Error::other(
                "received fatal alert: CertificateRevoked",
            )));
            status
        };
        assert!(transient(&Status::unavailable("transport error")));
        let (outcome, calls) = retried(certificate_alert, 5).await;
        assert_eq!(calls, 1, "{outcome:?}");
    }
}

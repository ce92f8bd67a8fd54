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

/// Retries a call while the coordinator is unreachable (it may still be starting), for up to a
/// minute; not when a certificate was refused at the handshake, which a retry cannot change.
pub(crate) async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut wait = Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::Unavailable
                    && !connection_error(&status)
                        .is_some_and(accord_crypto::tls::is_certificate_refusal)
                    && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

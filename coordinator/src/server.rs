//! The coordinator as a service: loads the TLS material and the CRL, listens
//! ([`crate::listener`]), serves the `Federation` gRPC service ([`crate::service`]) and drives
//! the federation's rounds until it ends, then says goodbye to every participant.

use crate::config::CoordinatorConfig;
use crate::federation::{Federation, FederationError, Outcome};
use crate::listener::{accept_loop, listen};
use crate::service::FederationService;
use accord_crypto::crl::{CrlError, CrlWatch};
use accord_crypto::secagg::IdentityError;
use accord_crypto::tls::TlsError;
use accord_proto::MAX_MESSAGE_BYTES;
use accord_proto::transport::WireMeter;
use accord_proto::v1::federation_server::FederationServer;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tracing::info;

/// Why the coordinator stopped before its federation finished, or how the federation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The coordinator's certificate, key or CA cannot be used for TLS.
    #[error("TLS setup: {0}")]
    Tls(#[from] TlsError),
    /// The certificate revocation list cannot be read or is not the CA's.
    #[error("TLS setup: {0}")]
    Crl(#[from] CrlError),
    /// The CA cannot be loaded to check participants' signed messages.
    #[error("TLS setup: {0}")]
    Trust(#[from] IdentityError),
    /// The listening address is taken or invalid.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The configured `listen` address.
        address: String,
        /// Why it cannot be listened on.
        source: io::Error,
    },
    /// The file the listening address is written to (`address_file`) cannot be written.
    #[error("{path}: cannot write the listening address: {source}")]
    AddressFile {
        /// The configured `address_file`.
        path: std::path::PathBuf,
        /// Why it cannot be written.
        source: io::Error,
    },
    /// The federation failed (registration, a round, the artefacts).
    #[error(transparent)]
    Federation(#[from] FederationError),
    /// The gRPC server could not be built.
    #[error("gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Serves the federation described by `config` until it has finished (or failed), then returns
/// how it ended.
pub async fn run(config: CoordinatorConfig) -> Result<Outcome, CoordinatorError> {
    // One view of the CRL for the handshakes, the signed messages and every request.
    let crl = CrlWatch::open_if_set(config.tls.crl.as_deref(), &config.tls.ca)?;
    let tls = accord_crypto::tls::server_config(
        &config.tls.ca,
        &config.tls.certificate,
        &config.tls.key,
        crl.clone(),
    )?;
    let listener = listen(&config.listen)
        .await
        .map_err(|source| CoordinatorError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| CoordinatorError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let meter = WireMeter::new();
    let mut trust = accord_crypto::secagg::Trust::load(&config.tls.ca)?;
    if let Some(crl) = &crl {
        trust = trust.with_crl(crl.clone());
    }
    let limits = config.connections.clone();
    let (address_file, federation_id) = (config.address_file.clone(), config.federation_id.clone());
    // Bound first (a taken port is refused at once), but the address is published and
    // connections accepted only once the federation is ready: loading the auditor's server key
    // takes seconds, and a participant's handshake would time out meanwhile.
    let federation = Arc::new(Federation::new(config, meter.clone(), trust)?);
    if let Some(path) = &address_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, local.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| CoordinatorError::AddressFile {
                path: path.clone(),
                source,
            })?;
    }
    info!(address = %local, federation = %federation_id, "coordinator listening (mutual TLS)");

    let (sender, receiver) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        limits,
        meter,
        sender,
    ));
    let service = FederationServer::new(FederationService::new(federation.clone(), crl))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(receiver), async {
                let _ = stopped.await;
            }),
    );

    let outcome = federation.drive().await;
    // Let every participant hear that the federation is over (or why it failed) before closing.
    federation.await_farewells(Duration::from_secs(10)).await;
    acceptor.abort();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(outcome?)
}

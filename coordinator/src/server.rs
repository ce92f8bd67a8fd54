//! The coordinator's listener: TCP, then a mutual-TLS handshake in which the client must present
//! a certificate chaining to the consortium CA (and not revoked). A refused handshake is logged
//! in one line saying why; an accepted connection carries its holder's identity (name and role
//! from the certificate) to every request made over it.

use crate::config::CoordinatorConfig;
use crate::federation::{Federation, FederationError, Outcome};
use crate::service::FederationService;
use accord_crypto::crl::CrlWatch;
use accord_crypto::pki::{Identity, Role};
use accord_proto::MAX_MESSAGE_BYTES;
use accord_proto::transport::{MeteredIo, WireMeter};
use accord_proto::v1::federation_server::FederationServer;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{info, warn};

/// The authenticated client of a connection, available to every request made over it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub identity: Identity,
    pub address: SocketAddr,
    /// The DER certificate the client authenticated with: its key verifies the client's
    /// signed protocol messages.
    pub certificate: std::sync::Arc<Vec<u8>>,
}

/// An accepted mutual-TLS connection with its client's identity.
pub struct AuthenticatedConnection {
    io: MeteredIo<TlsStream<TcpStream>>,
    peer: Peer,
}

impl Connected for AuthenticatedConnection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for AuthenticatedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: io::Error },
    #[error("{path}: cannot write the listening address: {source}")]
    AddressFile {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Federation(#[from] FederationError),
    #[error("gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Accepts TCP connections, runs the TLS handshake (in its own task, with a time limit, so a
/// slow client cannot hold up others) and passes on authenticated connections.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    participants: WireMeter,
    connections: mpsc::Sender<io::Result<AuthenticatedConnection>>,
) {
    loop {
        let (tcp, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (acceptor, participants, connections) =
            (acceptor.clone(), participants.clone(), connections.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    warn!(
                        "refused connection from {address}: {}",
                        accord_crypto::tls::describe_handshake_error(&e)
                    );
                    return;
                }
                Err(_) => {
                    warn!(
                        "refused connection from {address}: TLS handshake did not finish within 10 s"
                    );
                    return;
                }
            };
            let identity = match accord_crypto::tls::peer_identity(tls.get_ref().1) {
                Ok(identity) => identity,
                Err(e) => {
                    warn!("refused connection from {address}: {e}");
                    return;
                }
            };
            let certificate = std::sync::Arc::new(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| cert.to_vec())
                    .unwrap_or_default(),
            );
            info!(name = %identity.name, role = %identity.role, %address, "client authenticated");
            // Participants' traffic is what rounds report; observers' status polls are not.
            let meter = if identity.role == Role::Participant {
                participants
            } else {
                WireMeter::new()
            };
            let connection = AuthenticatedConnection {
                io: meter.wrap(tls),
                peer: Peer {
                    identity,
                    address,
                    certificate,
                },
            };
            let _ = connections.send(Ok(connection)).await;
        });
    }
}

/// Serves the federation described by `config` until it has finished (or failed), then returns
/// how it ended.
pub async fn run(config: CoordinatorConfig) -> Result<Outcome, CoordinatorError> {
    // One view of the CRL for the handshakes, the signed messages and every request.
    let crl = CrlWatch::open_if_set(config.tls.crl.as_deref(), &config.tls.ca)
        .map_err(|e| CoordinatorError::Tls(e.to_string()))?;
    let tls = accord_crypto::tls::server_config(
        &config.tls.ca,
        &config.tls.certificate,
        &config.tls.key,
        crl.clone(),
    )
    .map_err(|e| CoordinatorError::Tls(e.to_string()))?;
    let listener =
        TcpListener::bind(&config.listen)
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
    if let Some(path) = &config.address_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, local.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| CoordinatorError::AddressFile {
                path: path.clone(),
                source,
            })?;
    }
    info!(address = %local, federation = %config.federation_id, "coordinator listening (mutual TLS)");

    let meter = WireMeter::new();
    let mut trust = accord_crypto::secagg::identity::Trust::load(&config.tls.ca)
        .map_err(|e| CoordinatorError::Tls(e.to_string()))?;
    if let Some(crl) = &crl {
        trust = trust.with_crl(crl.clone());
    }
    let federation = Arc::new(Federation::new(config, meter.clone(), trust)?);
    let (sender, receiver) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), meter, sender));
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

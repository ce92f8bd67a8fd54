//! The coordinator's listener: TCP, then a mutual-TLS handshake in which the client must present
//! a certificate chaining to the consortium CA (and not revoked). A refused handshake is logged
//! in one line saying why; an accepted connection carries its holder's identity (name and role
//! from the certificate) to every request made over it.
//!
//! Anyone who can reach the port can open connections, so the listener bounds what they cost:
//! at most `[connections]` `max_handshakes` handshakes and `max_open` connections at once
//! (others wait in the kernel's listen backlog, unaccepted), a handshake time limit, and after
//! a failed `accept` (e.g. no file descriptor left) an exponential pause and rate-limited logs.

use crate::config::ConnectionsSection;
use accord_crypto::pki::{Identity, Role};
use accord_proto::transport::{MeteredIo, WireMeter};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::{info, warn};

/// The authenticated client of a connection, available to every request made over it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's name and role, from its certificate.
    pub identity: Identity,
    /// The client's remote address.
    pub address: SocketAddr,
    /// The DER certificate the client authenticated with: its key verifies the client's
    /// signed protocol messages.
    pub certificate: std::sync::Arc<Vec<u8>>,
}

/// An accepted mutual-TLS connection with its client's identity.
pub struct AuthenticatedConnection {
    io: MeteredIo<TlsStream<TcpStream>>,
    peer: Peer,
    /// Its place among the `max_open` connections, given back when the connection is dropped.
    _open: OwnedSemaphorePermit,
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

/// After a failed `accept`: pauses that double from [`AcceptBackoff::FIRST`] to
/// [`AcceptBackoff::LONGEST`] (back to the first after a success), and at most one log line per
/// [`AcceptBackoff::LONGEST`], counting the failures not logged. Without it a listener out of
/// file descriptors retries at once and writes a log line per retry.
#[derive(Debug)]
struct AcceptBackoff {
    pause: Duration,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            pause: Self::FIRST,
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Records a failed accept at `now`; how long to pause before the next.
    fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::LONGEST);
        if self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= Self::LONGEST)
        {
            warn!(
                "accept failed: {error} ({} more failures since the last such line); pausing {} ms",
                self.unlogged,
                pause.as_millis()
            );
            self.last_logged = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        pause
    }

    fn succeeded(&mut self) {
        self.pause = Self::FIRST;
    }
}

/// Accepts TCP connections, runs the TLS handshake (in its own task, with a time limit, so a
/// slow client cannot hold up others) and passes on authenticated connections. A connection is
/// accepted only when a handshake slot and an open-connection slot are free.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ConnectionsSection,
    participants: WireMeter,
    connections: mpsc::Sender<io::Result<AuthenticatedConnection>>,
) {
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes as usize));
    let open = Arc::new(Semaphore::new(limits.max_open as usize));
    let timeout = Duration::from_secs(limits.handshake_timeout_secs);
    let mut backoff = AcceptBackoff::new();
    loop {
        // The semaphores are never closed, so acquiring fails only if that changes.
        let (Ok(open_slot), Ok(handshake_slot)) = (
            open.clone().acquire_owned().await,
            handshakes.clone().acquire_owned().await,
        ) else {
            return;
        };
        let (tcp, address) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                tokio::time::sleep(backoff.failed(&e, Instant::now())).await;
                continue;
            }
        };
        let (acceptor, participants, connections) =
            (acceptor.clone(), participants.clone(), connections.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
            drop(handshake_slot);
            let tls = match handshake {
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
                        "refused connection from {address}: TLS handshake did not finish within {} s",
                        timeout.as_secs()
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
                _open: open_slot,
            };
            let _ = connections.send(Ok(connection)).await;
        });
    }
}

/// Connections the kernel completes and queues for `accept` while every handshake or
/// open-connection slot is taken (capped by the system's `somaxconn`). Tokio's default, 128,
/// would make clients beyond it retry their TCP handshake for seconds.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on the first address `address` ("host:port") resolves to that can be bound.
pub(crate) async fn listen(address: &str) -> io::Result<TcpListener> {
    let mut failure = None;
    for address in tokio::net::lookup_host(address).await? {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => failure = Some(e),
        }
    }
    Err(failure.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "the name resolves to no address",
        )
    }))
}

//! The connection under the gRPC channel: mutual TLS (configured by `accord-crypto`) over TCP,
//! with a meter that counts the bytes each party sends and receives.
//!
//! The meter sits between gRPC and TLS, so it sees exactly the application bytes a party puts on
//! the wire (HTTP/2 frames carrying protobuf). Parties report traffic with it, and the canary
//! test captures with it everything a participant sends, to prove no record value is in there.

use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// Counts bytes sent and received over any number of connections; optionally keeps a copy of
/// every byte sent.
#[derive(Clone, Debug, Default)]
pub struct WireMeter {
    inner: Arc<MeterInner>,
}

#[derive(Debug, Default)]
struct MeterInner {
    sent: AtomicU64,
    received: AtomicU64,
    capture: Option<Mutex<Vec<u8>>>,
}

impl WireMeter {
    /// A meter at zero that counts but keeps nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A meter that also keeps every byte sent (for inspection of what left this party).
    pub fn capturing() -> Self {
        Self {
            inner: Arc::new(MeterInner {
                capture: Some(Mutex::new(Vec::new())),
                ..Default::default()
            }),
        }
    }

    /// Application bytes sent so far (HTTP/2 frames, before TLS encryption).
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Application bytes received so far (after TLS decryption).
    pub fn received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Everything sent so far, when capturing.
    pub fn captured(&self) -> Option<Vec<u8>> {
        self.inner
            .capture
            .as_ref()
            .map(|c| c.lock().expect("capture lock").clone())
    }

    /// Wraps a connection so its traffic is counted by this meter.
    pub fn wrap<T>(&self, io: T) -> MeteredIo<T> {
        MeteredIo {
            io,
            meter: self.clone(),
        }
    }
}

/// A connection whose traffic is counted by a [`WireMeter`].
#[derive(Debug)]
pub struct MeteredIo<T> {
    io: T,
    meter: WireMeter,
}

impl<T> MeteredIo<T> {
    /// The wrapped connection (e.g. to read the TLS session's peer certificate).
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.meter.inner.received.fetch_add(read, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &result {
            let inner = &self.meter.inner;
            inner.sent.fetch_add(*written as u64, Ordering::Relaxed);
            if let Some(capture) = &inner.capture {
                capture
                    .lock()
                    .expect("capture lock")
                    .extend_from_slice(&buf[..*written]);
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Opens a gRPC channel to the coordinator at `address` ("host:port") over mutual TLS,
/// verifying the coordinator's certificate for `server_name`. The connection is made lazily and
/// re-made after a failure, so a client may start before the coordinator.
pub fn channel(
    address: &str,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    meter: WireMeter,
) -> Result<Channel, TransportError> {
    let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|_| TransportError::InvalidServerName(server_name.to_owned()))?;
    // The scheme is only a label here: TLS is done by the connector below, not by tonic.
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| TransportError::InvalidAddress(address.to_owned(), e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let address = address.to_owned();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let connect = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let (address, connector, server_name, meter) = (
            address.clone(),
            connector.clone(),
            server_name.clone(),
            meter.clone(),
        );
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(meter.wrap(tls)))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// Why a channel to the coordinator cannot be opened; nothing was connected yet.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("'{0}' is not a valid TLS server name")]
    /// The name (given) to verify the coordinator's certificate for is not a DNS name or IP
    /// address.
    InvalidServerName(String),
    #[error("'{0}' is not a valid coordinator address: {1}")]
    /// The coordinator's address (given, then the parser's reason) is not `host:port`.
    InvalidAddress(String, String),
}

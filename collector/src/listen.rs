//! Accepting connections on both ports without letting the silent or the slow starve anyone.
//!
//! - Each port holds at most a fixed number of connections at once ([`Admission`]); past it the listener stops
//!   accepting (the kernel's backlog holds the rest) instead of spending a file descriptor per connection, so
//!   hundreds of silent connections to one port cannot exhaust the process's descriptors and take the other
//!   port (`/healthz`) down with them. The caps are checked against `RLIMIT_NOFILE` at start-up ([`fd_budget`]).
//! - A gRPC connection must send the HTTP/2 preface (after its TLS handshake, if any) within the handshake
//!   timeout ([`Admitted`]); an HTTP connection its request headers (hyper's header read timeout, which also
//!   closes keep-alive connections idle that long).
//!
//! Idle agent streams are closed by the ingest service itself (`ingest/service.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// The HTTP/2 client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") is 24 bytes.
const H2_PREFACE: usize = 24;

/// Connections one port may hold at once.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self { permits: Arc::new(Semaphore::new(max)), max }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for room, then accepts one connection.
    pub async fn accept(&self, listener: &TcpListener) -> (TcpStream, std::net::SocketAddr, OwnedSemaphorePermit) {
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    // Acks are small: without this, Nagle holds each one back until the peer's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    return (tcp, peer, permit);
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: wait, try again.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A connection holding its place under the port's cap until it closes, and, until its first `needed` bytes
/// arrive, a deadline: past it, reading fails and the connection is dropped.
pub struct Admitted<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    deadline: Option<Pin<Box<Sleep>>>,
    needed: usize,
    metrics: Option<Arc<Metrics>>,
}

impl<IO> Admitted<IO> {
    /// `io` must send its HTTP/2 preface within `timeout` of now.
    pub fn h2(io: IO, permit: OwnedSemaphorePermit, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            io,
            _permit: permit,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            needed: H2_PREFACE,
            metrics: Some(metrics),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline {
            this.needed = this.needed.saturating_sub(read);
            if this.needed == 0 {
                this.deadline = None;
            } else if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                if let Some(m) = &this.metrics {
                    m.limit_breach("handshake");
                }
                tracing::debug!("closed a gRPC connection that sent no HTTP/2 preface in time");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 preface in time")));
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Admitted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Plain-text gRPC connections, each admitted under `admission` and given `timeout` for its preface.
pub fn grpc_plain(
    listener: TcpListener,
    admission: Admission,
    timeout: Duration,
    metrics: Arc<Metrics>,
) -> impl tokio_stream::Stream<Item = io::Result<Admitted<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, _, permit) = admission.accept(&listener).await;
            if tx.send(Ok(Admitted::h2(tcp, permit, timeout, metrics.clone()))).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves `app` over HTTP/1.1 on `listener` until `stop`: at most `admission`'s connections at once, each
/// closed when it does not send a request's headers within `header_timeout` (idle keep-alive included).
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    admission: Admission,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let builder = Arc::new(builder.http1_only());
    let (closing, _) = watch::channel(false);
    // Every connection task holds a sender; all gone means all connections closed.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(stop);
    loop {
        let (tcp, _, permit) = tokio::select! {
            c = admission.accept(&listener) => c,
            _ = &mut stop => break,
        };
        let (builder, service) = (builder.clone(), hyper_util::service::TowerToHyperService::new(app.clone()));
        let (mut closing, alive) = (closing.subscribe(), alive.clone());
        tokio::spawn(async move {
            let _held = (permit, alive);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = closing.send(true);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// The connection caps for both ports, checked against the process's file descriptors: the soft
/// `RLIMIT_NOFILE` is raised to the hard one when the caps and `reserve` (the ledger, TLS files, outbound
/// clients) need more; if even that is short, both caps are cut in proportion and a warning says so.
pub fn fd_budget(grpc: usize, http: usize, reserve: usize) -> (usize, usize) {
    let need = (grpc + http + reserve) as libc::rlim_t;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (grpc, http);
    }
    if lim.rlim_cur < need && lim.rlim_max > lim.rlim_cur {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max.min(need), rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let got = share(lim.rlim_cur, grpc, http, reserve);
    if got != (grpc, http) {
        tracing::warn!(
            open_files = lim.rlim_cur,
            grpc_connections = got.0,
            http_connections = got.1,
            asked = format!("{grpc} gRPC, {http} HTTP"),
            "the open-file limit (ulimit -n) cannot hold the connection caps (--max-grpc-connections, --max-http-connections); lowered to fit"
        );
    }
    got
}

/// The caps that fit in `files` descriptors with `reserve` kept back, in proportion (at least one each).
fn share(files: libc::rlim_t, grpc: usize, http: usize, reserve: usize) -> (usize, usize) {
    let room = usize::try_from(files.saturating_sub(reserve as libc::rlim_t)).unwrap_or(usize::MAX);
    if grpc + http <= room {
        return (grpc, http);
    }
    let g = (room as u128 * grpc as u128 / (grpc + http).max(1) as u128) as usize;
    (g.max(1), room.saturating_sub(g).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_the_open_file_limit_are_kept_and_others_cut_in_proportion() {
        assert_eq!(share(65_536, 10_240, 1_024, 128), (10_240, 1_024));
        let (g, h) = share(256, 10_240, 1_024, 64);
        assert!(g + h <= 192 && g > 10 * h - 10, "{g} {h}");
        assert_eq!(share(10, 100, 100, 64), (1, 1), "never none");
    }
}

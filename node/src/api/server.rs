//! Serving the admin API: [`ApiServer::start`] binds the API's address (and the token-free
//! metrics listener's, if configured) before serving either, so a taken port fails the start
//! cleanly with a [`BindError`] naming the address; [`ApiServer::shutdown`] stops both.

use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::not_found;
use super::{metrics, router};
use crate::identity::AdminToken;
use crate::node::Node;

/// Why the API could not listen on an address.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the admin API on {addr}: {}", explain(source))]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// The OS error in words; a taken port says so plainly, it is the usual cause.
fn explain(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        "the port is already in use (another node on this port?)".into()
    } else {
        e.to_string()
    }
}

/// The running API server (and the optional token-free metrics listener).
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

async fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), BindError> {
    let bind_error = |source| BindError { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: CancellationToken,
    what: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, server = what, "HTTP server stopped with an error");
        }
    })
}

impl Drop for ApiServer {
    /// Dropped without a shutdown (a failed start above it, a panic), it still stops serving.
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ApiServer {
    /// Binds `addr` (port 0 picks one) and serves the API for `node`; with `metrics`, also
    /// serves `GET /metrics` alone, without the token, on that address.
    pub async fn start(
        node: Node,
        addr: SocketAddr,
        token: AdminToken,
        metrics: Option<SocketAddr>,
    ) -> Result<ApiServer, BindError> {
        // Bind both before serving either, so a taken port fails the start cleanly.
        let (listener, local) = listen(addr).await?;
        let metrics_listener = match metrics {
            Some(a) => Some(listen(a).await?),
            None => None,
        };
        let stop = CancellationToken::new();
        let (app, state) = router(node, token, stop.clone());
        let mut tasks = vec![serve(listener, app, stop.clone(), "admin API")];
        let mut metrics_addr = None;
        if let Some((l, a)) = metrics_listener {
            let app = Router::new()
                .route("/metrics", axum::routing::get(metrics::serve))
                .fallback(not_found)
                .with_state(state);
            tasks.push(serve(l, app, stop.clone(), "metrics"));
            metrics_addr = Some(a);
        }
        Ok(ApiServer {
            addr: local,
            metrics_addr,
            stop,
            tasks,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the token-free metrics listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting requests and waits for the server tasks.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for mut task in self.tasks.drain(..) {
            // Open keep-alive connections would hold graceful shutdown forever; bound the wait.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut task).await;
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named_with_its_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = listen(addr).await.unwrap_err();
        assert_eq!(err.addr, addr);
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("already in use"), "{text}");
    }
}

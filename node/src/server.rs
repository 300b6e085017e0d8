//! The daemon: a [`Node`] with its admin API in front of it, started in that order and stopped
//! along one path (the shape of iroh's `Server`). The service layer knows nothing of HTTP; this
//! module is the only one that holds both.
//!
//! Invariant: a failed start leaves nothing running. [`Node::start`] stops whatever it had started
//! when one of its own steps fails; when the API cannot bind, the node that did start is shut down
//! through the same [`RunningNode::shutdown`] as a normal stop, so its resumed fetches, provenance
//! writer and database lock are gone before the error is returned.

use std::net::SocketAddr;

use crate::api::ApiServer;
use crate::identity::{AdminToken, IdentityError, TOKEN_FILE};
use crate::node::{Node, NodeError, NodeOptions, RunningNode};

/// Why the daemon could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The node failed (key, store, network, provenance log).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The admin token is missing, unreadable or readable by others.
    #[error(transparent)]
    Token(#[from] IdentityError),
    /// The admin API could not bind its address.
    #[error(transparent)]
    Api(#[from] crate::api::BindError),
}

/// A running node and its admin API.
#[derive(Debug)]
pub struct Server {
    /// The service handle.
    pub node: Node,
    /// Where the admin API listens.
    pub api_address: SocketAddr,
    /// Where the token-free metrics listener listens (`api.metrics_listen`), if configured.
    pub metrics_address: Option<SocketAddr>,
    running: RunningNode,
    api: ApiServer,
    token: AdminToken,
}

impl Server {
    /// Starts the node, then binds the admin API (and the metrics listener, if configured).
    pub async fn start(options: NodeOptions) -> Result<Server, ServerError> {
        let listen = options.config.api.listen;
        let metrics = options.config.api.metrics_listen;
        // The token is the API's: checked before anything starts, so a readable one refuses.
        let token = AdminToken::load(&options.data_dir.join(TOKEN_FILE))?;
        let running = Node::start(options).await?;
        let node = running.node.clone();
        let api = match ApiServer::start(node.clone(), listen, token.clone(), metrics).await {
            Ok(api) => api,
            Err(e) => {
                drop(node);
                if let Err(stop) = running.shutdown().await {
                    tracing::warn!(error = %stop, "stopping the node after the API failed to start");
                }
                return Err(e.into());
            }
        };
        let api_address = api.local_addr();
        node.set_api_address(api_address);
        tracing::info!(peer = %node.peer_id(), api = %api_address, "admin API listening");
        Ok(Server {
            token,
            metrics_address: api.metrics_addr(),
            node,
            api_address,
            running,
            api,
        })
    }

    /// The admin token the API checks; [`AdminToken::reload`] re-reads its file (on SIGHUP).
    pub fn admin_token(&self) -> &AdminToken {
        &self.token
    }

    /// Stops accepting API requests, then stops the node (see [`RunningNode::shutdown`]).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let Server {
            node, running, api, ..
        } = self;
        api.shutdown().await;
        drop(node);
        running.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CONFIG_FILE;
    use crate::model::region::Region;
    use std::path::Path;

    /// A fresh node in `dir` listening on loopback ports chosen by the OS.
    fn data_dir(dir: &Path) -> NodeOptions {
        crate::setup::init(crate::setup::InitOptions {
            data_dir: dir.join("node"),
            region: "310000".parse::<Region>().unwrap(),
            name: "上海市大数据中心".into(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            api: Some("127.0.0.1:0".parse().unwrap()),
            members: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            key: None,
        })
        .unwrap();
        reopen(dir)
    }

    fn reopen(dir: &Path) -> NodeOptions {
        NodeOptions::from_config_file(&dir.join("node").join(CONFIG_FILE)).unwrap()
    }

    /// The database is free again: nothing of the failed node still holds it.
    fn database_released(dir: &Path) -> bool {
        sled::Config::new()
            .path(dir.join("node").join(crate::store::DB_DIR))
            .open()
            .is_ok()
    }

    #[tokio::test]
    async fn starts_and_stops_releasing_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(data_dir(dir.path())).await.unwrap();
        assert!(
            !database_released(dir.path()),
            "a running node holds its database"
        );
        let view = server.node.view().await.unwrap();
        assert_eq!(view.api_address, Some(server.api_address.to_string()));
        server.shutdown().await.unwrap();
        assert!(database_released(dir.path()));
    }

    #[tokio::test]
    async fn a_taken_api_port_stops_the_started_node() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut options = data_dir(dir.path());
        options.config.api.listen = taken.local_addr().unwrap();
        let err = Server::start(options).await.unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        // The provenance writer, the resumed fetches and every handle to the node are gone.
        assert!(database_released(dir.path()));
    }

    #[tokio::test]
    async fn a_failed_fetch_acceptor_stops_the_provenance_writer_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let options = data_dir(dir.path());
        crate::failpoint::arm(&dir.path().join("node"), "start.accept_streams");
        let err = Server::start(options).await.unwrap_err();
        assert!(err.to_string().contains("already being accepted"), "{err}");
        assert!(database_released(dir.path()));
    }

    #[tokio::test]
    async fn a_failure_after_resumed_fetches_stops_them() {
        let dir = tempfile::tempdir().unwrap();
        let options = data_dir(dir.path());
        crate::failpoint::arm(&dir.path().join("node"), "start.after_resume");
        assert!(Server::start(options).await.is_err());
        assert!(database_released(dir.path()));
        // And the same data dir starts cleanly right after.
        let server = Server::start(reopen(dir.path())).await.unwrap();
        server.shutdown().await.unwrap();
    }
}

//! Scoped API clients (issue 15): the information systems that call a node's API, each with a
//! token of its own that allows only what it was given (`query:DATASET`, `fetch:DATASET`, or
//! `*` for every dataset), never the admin routes. The admin token keeps full rights. Tokens
//! are kept only as BLAKE3 hashes (tree `api_clients`); a token is shown once, when made.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::model::catalogue::valid_identifier;
use crate::store::RecordTree;

/// Most clients a node keeps.
pub const MAX_CLIENTS: usize = 1000;
/// Most scopes one client holds.
pub const MAX_SCOPES: usize = 256;

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAction {
    /// Query a dataset (`POST /api/v1/query`).
    Query,
    /// Fetch a dataset (`POST /api/v1/fetch`).
    Fetch,
}

impl ClientAction {
    /// The name in scopes: `query`, `fetch`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAction::Query => "query",
            ClientAction::Fetch => "fetch",
        }
    }
}

/// One right: an action on a dataset (`*`: any), written `query:DATASET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientScope {
    /// The action.
    pub action: ClientAction,
    /// The dataset (offer identifier), or `*`.
    pub dataset: String,
}

impl std::str::FromStr for ClientScope {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<ClientScope, NodeError> {
        let bad = || {
            NodeError::invalid(
                "allow",
                format!(
                    "{:?}: expected query:DATASET or fetch:DATASET (DATASET may be *)",
                    s.chars().take(80).collect::<String>()
                ),
            )
        };
        let (action, dataset) = s.split_once(':').ok_or_else(bad)?;
        let action = match action {
            "query" => ClientAction::Query,
            "fetch" => ClientAction::Fetch,
            _ => return Err(bad()),
        };
        if dataset != "*" && !valid_identifier(dataset) {
            return Err(bad());
        }
        Ok(ClientScope {
            action,
            dataset: dataset.to_string(),
        })
    }
}

/// The form `query:DATASET`.
impl std::fmt::Display for ClientScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.action.as_str(), self.dataset)
    }
}

/// A client as operators see it (no token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientView {
    /// Its name (an identifier), named in the provenance records of its calls.
    pub name: String,
    /// What it may do.
    pub allow: Vec<ClientScope>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

impl ClientView {
    /// Its scopes as text: `query:a, fetch:b`.
    pub fn allowed(&self) -> String {
        self.allow
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether it may do `action` on `dataset`.
    pub fn allows(&self, action: ClientAction, dataset: &str) -> bool {
        self.allow
            .iter()
            .any(|s| s.action == action && (s.dataset == "*" || s.dataset == dataset))
    }
}

/// A new client and its token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewClient {
    /// The client.
    pub client: ClientView,
    /// Its bearer token: keep it; the node keeps only its hash.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredClient {
    view: ClientView,
    token_hash: String,
}

fn token_hash(token: &str) -> String {
    blake3::derive_key("yrd/v1 api client token", token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Node {
    /// Makes a client allowed `allow` (each `query:DATASET` or `fetch:DATASET`); returns its
    /// token, which is not kept.
    pub async fn add_client(&self, name: &str, allow: &[String]) -> Result<NewClient, NodeError> {
        if !valid_identifier(name) {
            return Err(NodeError::invalid(
                "name",
                "a client name is 1-64 characters of a-z 0-9 . _ - starting with a letter or digit"
                    .into(),
            ));
        }
        if allow.is_empty() || allow.len() > MAX_SCOPES {
            return Err(NodeError::invalid(
                "allow",
                format!(
                    "a client is allowed 1 to {MAX_SCOPES} things (query:DATASET, fetch:DATASET)"
                ),
            ));
        }
        let allow = allow
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<ClientScope>, _>>()?;
        let _guard = self.inner.write_lock.lock().await;
        let held = self
            .store()
            .records::<StoredClient>(RecordTree::ApiClients)?;
        if held.iter().any(|(k, _)| k == name) {
            return Err(NodeError::Conflict(format!(
                "client {name} exists; remove it first"
            )));
        }
        if held.len() >= MAX_CLIENTS {
            return Err(NodeError::Conflict(format!(
                "at most {MAX_CLIENTS} clients"
            )));
        }
        let token = crate::identity::new_token();
        let view = ClientView {
            name: name.to_string(),
            allow,
            created_at: now_rfc3339(),
        };
        self.store().put_record(
            RecordTree::ApiClients,
            name,
            &StoredClient {
                view: view.clone(),
                token_hash: token_hash(&token),
            },
        )?;
        self.store().flush().await?;
        tracing::info!(client = name, "API client added");
        Ok(NewClient {
            client: view,
            token,
        })
    }

    /// Every client.
    pub fn clients(&self) -> Result<Vec<ClientView>, NodeError> {
        Ok(self
            .store()
            .records::<StoredClient>(RecordTree::ApiClients)?
            .into_iter()
            .map(|(_, c)| c.view)
            .collect())
    }

    /// Removes client `name`: its token stops working at once.
    pub async fn remove_client(&self, name: &str) -> Result<ClientView, NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        let held: Option<StoredClient> = self.store().record(RecordTree::ApiClients, name)?;
        let held = held.ok_or_else(|| NodeError::NotFound(format!("no client {name}")))?;
        self.store().remove_record(RecordTree::ApiClients, name)?;
        self.store().flush().await?;
        tracing::info!(client = name, "API client removed");
        Ok(held.view)
    }

    /// The client whose token is `token`, if any.
    pub fn client_for_token(&self, token: &str) -> Result<Option<ClientView>, NodeError> {
        let hash = token_hash(token);
        Ok(self
            .store()
            .records::<StoredClient>(RecordTree::ApiClients)?
            .into_iter()
            .find(|(_, c)| c.token_hash == hash)
            .map(|(_, c)| c.view))
    }
}

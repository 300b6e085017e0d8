//! The admin API client the CLI uses to talk to a running node: finds the address and token from
//! a data dir or config file, sends JSON, and turns HTTP failures into errors that name the cause.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{CONFIG_FILE, NodeConfig};
use crate::identity::{self, TOKEN_FILE};

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither --data-dir nor --config was given.
    #[error("no node given: pass --data-dir DIR or --config FILE (or set YRD_DATA_DIR)")]
    NoNode,
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The token could not be read.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The node did not answer.
    #[error("cannot reach the node's admin API at {url}: {cause} (is `yrd run` running?)")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        cause: String,
    },
    /// The node answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The answer was not what we expected.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
}

/// A client bound to one node.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for `base` (e.g. "http://127.0.0.1:7400") with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        ApiClient {
            base: base.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http,
        }
    }

    /// Finds address and token from `--data-dir` or `--config`.
    pub fn locate(data_dir: Option<&Path>, config: Option<&Path>) -> Result<Self, ClientError> {
        let config_path: PathBuf = match (config, data_dir) {
            (Some(c), _) => c.to_path_buf(),
            (None, Some(d)) => d.join(CONFIG_FILE),
            (None, None) => return Err(ClientError::NoNode),
        };
        let cfg = NodeConfig::load(&config_path)?;
        let dir = match (config, data_dir) {
            (None, Some(d)) => d.to_path_buf(),
            _ => cfg.data_dir(&config_path),
        };
        let token = identity::load_token(&dir.join(TOKEN_FILE))?;
        Ok(ApiClient::new(format!("http://{}", cfg.api.listen), token))
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request with the token: the body of a success, or why it failed.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            cause: cause(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(cause(&e)))?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body["error"].as_str().unwrap_or("error").to_string(),
                message: body["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// GET a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.send(reqwest::Method::GET, path, None).await?;
        decode(&bytes)
    }

    /// GET a resource as text (exports).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let bytes = self.send(reqwest::Method::GET, path, None).await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// POST JSON and read JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_value(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let bytes = self.send(reqwest::Method::POST, path, Some(&body)).await?;
        decode(&bytes)
    }

    /// GETs a file and writes it to `out` (temp file, fsync, rename): never a half-written
    /// `out`. Returns the bytes written and the digest the node announced.
    pub async fn download(&self, path: &str, out: &Path) -> Result<(u64, String), ClientError> {
        use std::io::Write;
        let url = format!("{}{path}", self.base);
        let mut response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                cause: cause(&e),
            })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body["error"].as_str().unwrap_or("error").to_string(),
                message: body["message"].as_str().unwrap_or("").to_string(),
            });
        }
        let digest = response
            .headers()
            .get("x-yrd-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let io = |e: std::io::Error| ClientError::Decode(format!("{}: {e}", out.display()));
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Decode(cause(&e)))?
        {
            hasher.update(&chunk);
            tmp.write_all(&chunk).map_err(io)?;
            written += chunk.len() as u64;
        }
        let got = hasher.finalize().to_hex().to_string();
        if !digest.is_empty() && got != digest {
            return Err(ClientError::Decode(format!(
                "downloaded file has digest {got}, the node said {digest}; {} left untouched",
                out.display()
            )));
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(out).map_err(|e| io(e.error))?;
        Ok((written, got))
    }

    /// DELETE and read JSON.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.send(reqwest::Method::DELETE, path, None).await?;
        decode(&bytes)
    }
}

/// A path segment or query value percent-encoded (RFC 3986 unreserved characters kept).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cause(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

//! A small HTTP client for the CLI (submit, verify, monitor) and tests.
//! Everything it returns is untrusted until checked by [`crate::verify`].

use crate::wire;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The status, code and message of an error answer.
fn status_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(e) => ClientError::Status {
            status,
            code: Some(e.error.code),
            message: e.error.message,
        },
        Err(_) => ClientError::Status {
            status,
            code: None,
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A non-2xx answer, with the server's error code when it sent one.
    #[error("server answered {status}: {message}")]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// True for a client error (4xx) that retrying will not fix.
    pub fn is_client_error(&self) -> bool {
        matches!(self, ClientError::Status { status, .. } if (400..500).contains(status))
    }
}

/// Largest response read into memory (a tile, a page, a trace bundle),
/// counted after decompression.
pub const MAX_RESPONSE: usize = 64 << 20;
/// Largest receipt: a 64 KiB event, its proof and a checkpoint.
const MAX_RECEIPT: usize = 1 << 20;

/// The most a path's answer may hold: a checkpoint is a signed note.
fn limit_for(path: &str) -> usize {
    if path == "/checkpoint" {
        crate::note::MAX_NOTE_BYTES
    } else {
        MAX_RESPONSE
    }
}

/// The body, chunk by chunk (decompressed), failing as soon as it passes
/// `limit` bytes.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    path: &str,
) -> Result<Vec<u8>, ClientError> {
    if resp.content_length().is_some_and(|n| n as usize > limit) {
        return Err(ClientError::Decode(format!(
            "{path}: the answer is larger than {limit} bytes"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(ClientError::Decode(format!(
                "{path}: the answer is larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POST an event body; returns the status (201 new, 200 already in
    /// the log) and the receipt, which the caller should verify.
    pub async fn submit(&self, body: Vec<u8>) -> Result<(u16, wire::Receipt), ClientError> {
        self.submit_with(body, false).await
    }

    /// POST an event; with `witnessed`, ask the server to wait for a
    /// checkpoint cosigned by its witnesses before answering.
    pub async fn submit_with(
        &self,
        body: Vec<u8>,
        witnessed: bool,
    ) -> Result<(u16, wire::Receipt), ClientError> {
        let query = if witnessed { "?wait=witnessed" } else { "" };
        let mut req = self
            .http
            .post(format!("{}/v1/events{query}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_RECEIPT, "/v1/events").await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &body));
        }
        let receipt = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Decode(format!("receipt: {e}")))?;
        Ok((status, receipt))
    }

    /// A client for transfers of any length: no overall time limit, but
    /// a connection that stays silent for a minute fails.
    fn transfer_client() -> Result<reqwest::Client, ClientError> {
        Ok(reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?)
    }

    /// PUT the file at `path` as the artifact `digest` (lowercase hex),
    /// streaming it; `sent` is told how many bytes have gone so far.
    pub async fn put_artifact(
        &self,
        digest: &str,
        path: &std::path::Path,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<(u16, wire::ArtifactStored), ClientError> {
        use futures_util::StreamExt;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Decode(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| ClientError::Decode(format!("{}: {e}", path.display())))?
            .len();
        let mut total = 0u64;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |c| {
            if let Ok(c) = &c {
                total += c.len() as u64;
                sent(total);
            }
            c
        });
        let mut req = Self::transfer_client()?
            .put(format!("{}/v1/artifacts/sha256/{digest}", self.base))
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        // A refused upload is answered after the server has read a few MiB
        // of it; past that, the refusal can arrive as a closed connection.
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                return ClientError::Http(e);
            }
            ClientError::Decode(format!(
                "the upload was cut off ({e}); the server refuses uploads from a token \
                 without the submitter role and blobs over its size limit"
            ))
        })?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_RECEIPT, "/v1/artifacts").await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &body));
        }
        let stored = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Decode(format!("artifact: {e}")))?;
        Ok((status, stored))
    }

    /// GET the artifact `digest`, handing each chunk to `sink` as it comes;
    /// `size` is told the length once the answer starts. Unverified: the
    /// caller hashes what it received.
    pub async fn get_artifact(
        &self,
        digest: &str,
        size: impl FnOnce(Option<u64>),
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ClientError> {
        let mut req =
            Self::transfer_client()?.get(format!("{}/v1/artifacts/sha256/{digest}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_limited(resp, MAX_RECEIPT, "/v1/artifacts").await?;
            return Err(status_error(status, &body));
        }
        size(resp.content_length());
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            n += chunk.len() as u64;
            sink(&chunk).map_err(|e| ClientError::Decode(format!("writing: {e}")))?;
        }
        Ok(n)
    }

    /// POST `/v1/admin/reconcile` and read the report.
    pub async fn reconcile(&self) -> Result<wire::ReconcileReport, ClientError> {
        let mut req = Self::transfer_client()?.post(format!("{}/v1/admin/reconcile", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_RESPONSE, "/v1/admin/reconcile").await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(format!("report: {e}")))
    }

    /// GET `/v1/reveal`: the value entry `index` commits to at `field`
    /// (auditor or admin token). Unverified: see `verify::reveal`.
    pub async fn reveal(&self, index: u64, field: &str) -> Result<wire::Reveal, ClientError> {
        let mut url = reqwest::Url::parse("http://localhost/v1/reveal")
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("index", &index.to_string())
            .append_pair("field", field);
        let path = format!("/v1/reveal?{}", url.query().unwrap_or(""));
        let body = self.get_bytes_limited(&path, MAX_RECEIPT).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(format!("reveal: {e}")))
    }

    /// POST `/v1/admin/reconciled` (admin or auditor token): log a
    /// reconciliation's counts; the receipt of its `reconcile` event.
    pub async fn record_reconciliation(
        &self,
        r: &wire::Reconciled,
    ) -> Result<wire::Receipt, ClientError> {
        self.post_json("/v1/admin/reconciled", r).await
    }

    /// POST `/v1/admin/erase` (admin token).
    pub async fn erase(&self, subject: &str) -> Result<wire::Erased, ClientError> {
        let req = wire::EraseRequest {
            subject: subject.to_string(),
        };
        self.post_json("/v1/admin/erase", &req).await
    }

    /// POST a JSON body with the token; the JSON answer (small: a receipt
    /// at most).
    async fn post_json<B: serde::Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_RECEIPT, path).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    /// GET a path below the base URL.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.get_bytes_limited(path, limit_for(path)).await
    }

    /// GET a path, reading at most `limit` bytes of body after
    /// decompression: a hostile server cannot make the client hold more.
    pub async fn get_bytes_limited(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        // A log whose reads are private needs the token for them too.
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, limit, path).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &body));
        }
        Ok(body)
    }

    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        String::from_utf8(self.get_bytes(path).await?)
            .map_err(|_| ClientError::Decode(format!("{path}: not UTF-8")))
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let body = self.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    /// GET with retries and exponential backoff on network errors and 5xx;
    /// a 4xx is returned at once.
    pub async fn get_bytes_retrying(
        &self,
        path: &str,
        attempts: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let mut delay = Duration::from_millis(200);
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            match self.get_bytes(path).await {
                Ok(b) => return Ok(b),
                Err(e) if e.is_client_error() => return Err(e),
                Err(e) => {
                    tracing::warn!(path, attempt, error = %e, "retrying");
                    last = Some(e);
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        Err(last.unwrap_or_else(|| ClientError::Decode("no attempt made".into())))
    }
}

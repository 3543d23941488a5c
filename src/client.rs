//! A small HTTP client for the CLI (submit) and the load generator.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server answered {status}: {message}")]
    Status { status: u16, message: String },
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
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// POST an event body; returns the status and the receipt JSON.
    pub async fn submit(&self, body: Vec<u8>) -> Result<(u16, serde_json::Value), ClientError> {
        let mut req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !(200..300).contains(&status) {
            let message = json["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(text);
            return Err(ClientError::Status { status, message });
        }
        Ok((status, json))
    }

    /// GET a path below the base URL as text.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status {
                status,
                message: text,
            });
        }
        Ok(text)
    }
}

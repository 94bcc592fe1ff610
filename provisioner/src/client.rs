//! A small signed client for a provisioner's API: what `provisioner join` and the tests use,
//! and a reference for the panel's client (same signing, same wire types).

use std::time::Duration;
use thiserror::Error;
use vessel_core::signing::{sign_now, HostSecret};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bad URL {0:?}")]
    Url(String),
}

/// An HTTP client for one host, signing every request with the host's secret.
#[derive(Clone)]
pub struct HostClient {
    base: String,
    secret: HostSecret,
    http: reqwest::Client,
}

/// Builds a reqwest client trusting the public roots plus `ca_pem` (a self-signed host or
/// panel certificate), with an overall timeout per request.
pub fn http_client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).use_rustls_tls();
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(b.build()?)
}

impl HostClient {
    /// `base` is the host's API URL, e.g. `https://10.0.0.5:8443` (no trailing slash needed).
    pub fn new(base: &str, secret: HostSecret, http: reqwest::Client) -> Self {
        HostClient { base: base.trim_end_matches('/').to_string(), secret, http }
    }

    /// Sends a signed request; `path` includes the query (e.g. `/v1/instances`). Returns the
    /// status and the body whatever the status.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::Url(path.into()));
        }
        let body = body.unwrap_or_default();
        let sig = sign_now(&self.secret, method.as_str(), path, &body);
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        for (name, value) in sig.pairs() {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    /// `request` with a JSON body and a JSON answer (`serde_json::Value` for problems too).
    pub async fn json<T: serde::Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&T>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("wire types serialise"));
        let (status, resp) = self.request(method, path, bytes).await?;
        let v = if resp.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&resp).unwrap_or(serde_json::Value::Null) };
        Ok((status.as_u16(), v))
    }
}

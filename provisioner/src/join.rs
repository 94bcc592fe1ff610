//! `provisioner join`: registers this host with the panel using a one-time token an admin
//! made, and keeps the secret the panel answers with (0600, in the state dir). The token and
//! the secret are never logged.

use crate::config::{write_private, ConfigError, DaemonConfig, Transport};
use std::time::Duration;
use thiserror::Error;
use vessel_core::signing::{HostSecret, SecretError};
use vessel_core::wire::{JoinRequest, JoinResponse};

#[derive(Debug, Error)]
pub enum JoinError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("already joined: {0} exists (pass --force to join again)")]
    AlreadyJoined(std::path::PathBuf),
    #[error("reaching the panel: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the panel refused the join ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("the panel's answer: {0}")]
    BadAnswer(String),
    #[error("the panel's secret: {0}")]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Refuse(String),
}

pub struct JoinArgs {
    pub panel_url: String,
    pub token: String,
    pub name: String,
    pub api_url: String,
    /// PEM of a CA (or the panel's self-signed certificate) to trust besides the public roots.
    pub panel_ca: Option<Vec<u8>>,
    pub force: bool,
    /// Send the token to an `http://` panel URL (readable on the wire): only when told so.
    pub allow_http_panel: bool,
    pub supports_containers: bool,
    pub supports_kvm: bool,
}

/// SHA-256 (hex) of the first certificate in the PEM file `cert`: the one the API serves.
pub fn cert_sha256(cert: &std::path::Path) -> Result<String, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let der = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| ConfigError::Tls(format!("{}: {e}", cert.display())))?
        .next()
        .ok_or_else(|| ConfigError::Tls(format!("{}: no certificate", cert.display())))?
        .map_err(|e| ConfigError::Tls(format!("{}: {e}", cert.display())))?;
    Ok(hex::encode(sha2::Sha256::digest(der.as_ref())))
}

/// Refuses, before anything is sent or written, a join that would leak the token (an
/// `http://` panel without `allow_http_panel`) or that announces an API URL whose scheme is not
/// what `serve` will speak.
fn check_urls(cfg: &DaemonConfig, args: &JoinArgs) -> Result<(), JoinError> {
    let panel = args.panel_url.to_ascii_lowercase();
    if panel.starts_with("http://") {
        if !args.allow_http_panel {
            return Err(JoinError::Refuse(format!(
                "the panel URL {} is plain HTTP: the join token and the host's secret would cross the network readable; \
                 use the panel's https:// URL, or pass --allow-http-panel if this link is private",
                args.panel_url
            )));
        }
        tracing::warn!(panel_url = %args.panel_url, "joining over plain HTTP (--allow-http-panel): the token and secret are readable on the wire");
    } else if !panel.starts_with("https://") {
        return Err(JoinError::Refuse(format!("the panel URL {} is not an https:// URL", args.panel_url)));
    }
    let scheme = cfg.transport()?.scheme();
    if !args.api_url.to_ascii_lowercase().starts_with(&format!("{scheme}://")) {
        return Err(JoinError::Refuse(format!(
            "--api-url {} does not match how this host serves its API ({scheme}://{}): {}",
            args.api_url,
            cfg.listen,
            if scheme == "https" { "TLS is the default" } else { "plain_http = true is set" }
        )));
    }
    Ok(())
}

/// Posts the join request and stores the host id and secret. Returns the host id.
pub async fn join(cfg: &DaemonConfig, args: JoinArgs) -> Result<uuid::Uuid, JoinError> {
    let secret_path = cfg.secret_path();
    if secret_path.exists() && !args.force {
        return Err(JoinError::AlreadyJoined(secret_path));
    }
    check_urls(cfg, &args)?;
    // The panel pins this very certificate: it then needs no CA to trust the host.
    let tls_cert_sha256 = match cfg.transport()? {
        Transport::Tls { cert, key, self_signed } => {
            if self_signed {
                let names: Vec<String> = crate::tls::url_host(&args.api_url).into_iter().collect();
                crate::tls::ensure_self_signed(&cert, &key, &names)?;
            }
            Some(cert_sha256(&cert)?)
        }
        Transport::PlainHttp => {
            tracing::warn!("plain_http = true: this host's API will be plain HTTP (signed, but readable on the wire)");
            None
        }
    };
    let request = JoinRequest {
        token: args.token,
        name: args.name,
        api_url: args.api_url,
        capacity: cfg.usable_capacity()?,
        supports_containers: args.supports_containers,
        supports_kvm: args.supports_kvm,
        tls_cert_sha256,
    };
    let http =
        crate::client::http_client(args.panel_ca.as_deref(), Duration::from_secs(30)).map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    let url = format!("{}/hosts/join", args.panel_url.trim_end_matches('/'));
    tracing::info!(%url, name = %request.name, api_url = %request.api_url, "joining the panel");
    let resp = http.post(&url).json(&request).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(JoinError::Refused { status: status.as_u16(), body: text.chars().take(500).collect() });
    }
    let answer: JoinResponse = serde_json::from_slice(&body).map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    let secret = HostSecret::from_base64(&answer.secret)?;
    write_private(&secret_path, secret.to_base64().as_bytes())?;
    write_private(&cfg.host_id_path(), answer.host_id.to_string().as_bytes())?;
    tracing::info!(host_id = %answer.host_id, secret_file = %secret_path.display(), "joined");
    Ok(answer.host_id)
}

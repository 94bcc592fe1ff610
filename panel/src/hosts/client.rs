//! The panel's client for one host's provisioner API: every request signed with the host's
//! secret (see `vessel_core::signing`), answers and errors in the shared wire types.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;
use vessel_core::signing::{sign_now, HostSecret};
use vessel_core::wire::{HostAction, HostReport, InstanceStatus, Problem, ProblemType};
use vessel_core::{InstanceId, InstanceSpec};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Connect refused, timed out, the link is down: the host may be fine, we cannot tell.
    #[error("host unreachable: {0}")]
    Unreachable(String),
    /// The host answered with a problem (admission refused, action not allowed, …).
    #[error("host refused: {} ({})", .0.detail, .0.status)]
    Refused(Problem),
    #[error("unexpected answer from host: {0}")]
    Protocol(String),
}

impl HostError {
    /// Worth retrying later as is (versus a refusal that will not change by waiting).
    pub fn is_transient(&self) -> bool {
        match self {
            HostError::Unreachable(_) => true,
            HostError::Refused(p) => matches!(p.kind, ProblemType::Unavailable | ProblemType::RuntimeFailed),
            HostError::Protocol(_) => true,
        }
    }
}

/// The HTTP client for talking to hosts. `timeout` bounds every request (creating a VM is a
/// few seconds at most); `ca` is the provider's own CA (PEM) that hosts' certificates are
/// issued by, trusted beside the system's roots. Build it once and share it.
pub fn http_client(timeout: Duration, ca: Option<&reqwest::Certificate>) -> reqwest::Client {
    // Hosts answer directly; a redirect would be someone else talking.
    let mut b =
        reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(3)).redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        b = b.add_root_certificate(ca.clone());
    }
    b.build().expect("a reqwest client with static settings builds")
}

/// A client that accepts from a host exactly the certificate whose SHA-256 (of its DER, hex)
/// is `sha256_hex`: no CA, no name check, so a host can serve a self-signed certificate
/// and the panel still cannot be talked to by anyone else. The handshake's signatures are
/// still verified, so only the holder of that certificate's key passes.
pub fn pinned_http_client(timeout: Duration, sha256_hex: &str) -> Result<reqwest::Client, HostError> {
    let mut pin = [0u8; 32];
    hex::decode_to_slice(sha256_hex, &mut pin).map_err(|e| HostError::Protocol(format!("pinned certificate fingerprint: {e}")))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HostError::Protocol(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(PinnedCert { pin, provider }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| HostError::Protocol(e.to_string()))
}

/// rustls verifier for [`pinned_http_client`].
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        // Not secret, so a plain compare is fine.
        if got == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("the host's certificate (sha256 {}) is not the one it joined with", hex::encode(got))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Every HTTP client orchestration talks to hosts with: the shared one (system roots and the
/// configured CA) for hosts without a pinned certificate, and one per pin, built on first use
/// and kept (each keeps its connection pool). Cheap to clone.
#[derive(Clone)]
pub struct HostHttp {
    shared: reqwest::Client,
    timeout: Duration,
    pinned: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, reqwest::Client>>>,
}

impl HostHttp {
    pub fn new(shared: reqwest::Client, timeout: Duration) -> Self {
        HostHttp { shared, timeout, pinned: Default::default() }
    }

    /// The client for a host with this pin (`None`: the shared client).
    pub fn for_pin(&self, pin: Option<&str>) -> Result<reqwest::Client, HostError> {
        let Some(pin) = pin else { return Ok(self.shared.clone()) };
        let mut map = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(pin) {
            return Ok(c.clone());
        }
        let c = pinned_http_client(self.timeout, pin)?;
        map.insert(pin.to_string(), c.clone());
        Ok(c)
    }
}

/// An error with its causes: reqwest's own message ("error sending request") hides why
/// (refused, timed out, a certificate that is not the pinned one), which admins need.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[derive(Clone)]
pub struct HostClient {
    base: String,
    secret: HostSecret,
    http: reqwest::Client,
}

impl HostClient {
    /// A client for the host at `base_url`, over `http` (one shared [`http_client`]: its
    /// connection pool and TLS set-up serve every host).
    pub fn new(base_url: &str, secret: HostSecret, http: reqwest::Client) -> Self {
        Self { base: base_url.trim_end_matches('/').to_string(), secret, http }
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Option<T>, HostError> {
        let body = body.unwrap_or_default();
        let sig = sign_now(&self.secret, method.as_str(), path, &body);
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        for (k, v) in sig.pairs() {
            req = req.header(k, v);
        }
        if let Some(id) = crate::telemetry::current_request_id() {
            req = req.header(vessel_core::wire::REQUEST_ID_HEADER, id);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| HostError::Unreachable(with_causes(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| HostError::Unreachable(e.to_string()))?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes).map(Some).map_err(|e| HostError::Protocol(format!("{e}")));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(HostError::Refused(p)),
            Err(_) => Err(HostError::Protocol(format!("{status}: {}", String::from_utf8_lossy(&bytes)))),
        }
    }

    pub async fn report(&self) -> Result<HostReport, HostError> {
        self.call(Method::GET, "/v1/host", None).await?.ok_or_else(|| HostError::Protocol("empty report".into()))
    }

    pub async fn list(&self) -> Result<Vec<InstanceStatus>, HostError> {
        Ok(self.call(Method::GET, "/v1/instances", None).await?.unwrap_or_default())
    }

    /// One instance; `Ok(None)` when the host does not have it.
    pub async fn get(&self, id: InstanceId) -> Result<Option<InstanceStatus>, HostError> {
        match self.call(Method::GET, &format!("/v1/instances/{id}"), None).await {
            Err(HostError::Refused(p)) if p.kind == ProblemType::NotFound => Ok(None),
            other => other,
        }
    }

    /// Creates (idempotently: the same spec again answers the same instance).
    pub async fn create(&self, spec: &InstanceSpec) -> Result<InstanceStatus, HostError> {
        let body = serde_json::to_vec(spec).expect("specs serialise");
        self.call(Method::PUT, &format!("/v1/instances/{}", spec.id), Some(body))
            .await?
            .ok_or_else(|| HostError::Protocol("empty create answer".into()))
    }

    pub async fn action(&self, id: InstanceId, req: &HostAction) -> Result<InstanceStatus, HostError> {
        let body = serde_json::to_vec(req).expect("actions serialise");
        self.call(Method::POST, &format!("/v1/instances/{id}/actions"), Some(body))
            .await?
            .ok_or_else(|| HostError::Protocol("empty action answer".into()))
    }

    /// Replaces the instance's firewall on the host (idempotent: the whole list each time).
    pub async fn set_firewall(&self, id: InstanceId, firewall: &vessel_core::Firewall) -> Result<InstanceStatus, HostError> {
        let body = serde_json::to_vec(firewall).expect("firewalls serialise");
        self.call(Method::PUT, &format!("/v1/instances/{id}/firewall"), Some(body))
            .await?
            .ok_or_else(|| HostError::Protocol("empty firewall answer".into()))
    }

    /// Destroys (idempotently: absent is fine).
    pub async fn destroy(&self, id: InstanceId) -> Result<(), HostError> {
        self.call::<serde_json::Value>(Method::DELETE, &format!("/v1/instances/{id}"), None).await.map(|_| ())
    }

    /// Opens the instance's console on the host: a signed `GET` upgraded to a WebSocket over
    /// this client's connection (so the pinned certificate holds for it too). A host that
    /// refuses (not running, unknown instance) answers a problem instead of switching.
    pub async fn console(&self, id: InstanceId) -> Result<ConsoleSocket, HostError> {
        use base64::Engine;
        use rand::RngCore;
        let path = vessel_core::wire::console_path(id);
        let sig = sign_now(&self.secret, "GET", &path, &[]);
        let mut key = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut key);
        let mut req = self
            .http
            .get(format!("{}{}", self.base, path))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", base64::engine::general_purpose::STANDARD.encode(key));
        for (k, v) in sig.pairs() {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| HostError::Unreachable(with_causes(&e)))?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = resp.bytes().await.map_err(|e| HostError::Unreachable(e.to_string()))?;
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => HostError::Refused(p),
                Err(_) => HostError::Protocol(format!("{status}: {}", String::from_utf8_lossy(&bytes))),
            });
        }
        let upgraded = resp.upgrade().await.map_err(|e| HostError::Protocol(format!("console upgrade: {}", with_causes(&e))))?;
        Ok(tokio_tungstenite::WebSocketStream::from_raw_socket(upgraded, tokio_tungstenite::tungstenite::protocol::Role::Client, None)
            .await)
    }
}

/// A console's WebSocket to its host (see [`HostClient::console`]).
pub type ConsoleSocket = tokio_tungstenite::WebSocketStream<reqwest::Upgraded>;

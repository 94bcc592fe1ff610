//! Webhooks: a reseller's endpoints, and the worker that delivers the events the database's
//! triggers record (`api_events`, one `webhook_deliveries` row per event × enabled endpoint,
//! written in the transaction of the change itself, so no event is lost or invented).
//!
//! **Delivery.** A worker (in every `panel serve` with `[webhooks] worker = true`) claims due
//! deliveries with `FOR UPDATE SKIP LOCKED` and leases them past the request timeout, so
//! several processes share the queue and never send one delivery at the same time; it POSTs
//! `{"id", "type", "created_at", "data"}` with `Vessel-Event-Id`, `Vessel-Event-Type` and
//! `Vessel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A 2xx
//! answer is delivered; anything else (another status, a redirect — never followed — a refused
//! connection, a timeout) is retried with exponential backoff and jitter until
//! `max_attempts`, then `failed` with the last error (its owner can send it again). Delivery is
//! at least once: a crash between the receiver's 2xx and the commit sends it again, so
//! receivers deduplicate on the event id.

use crate::audit::{self, Actor, ActorKind};
use crate::config::WebhookSettings;
use crate::db::webhooks::{self as sql, Claimed};
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;
use sqlx::PgPool;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use sql::{DeliveryRow, EndpointRow};

/// The prefix of every signing secret, so a leaked one is recognisable.
pub const SECRET_PREFIX: &str = "whsec_";
/// How many deliveries an endpoint's log shows.
pub const LOG_LIMIT: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL the reseller typed; the field is `url`.
    #[error("url: {0}")]
    BadUrl(String),
    #[error("only resellers have webhook endpoints")]
    NotAllowed,
    #[error("no such endpoint or delivery")]
    NotFound,
    #[error("only a failed delivery can be sent again")]
    NotFailed,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl WebhookError {
    /// A mistake the person can correct (shown on the form), as opposed to a fault.
    pub fn is_user_error(&self) -> bool {
        matches!(self, WebhookError::BadUrl(_) | WebhookError::NotFailed)
    }
}

/// Accepts an absolute http(s) URL with a host and without credentials (they would be stored
/// and shown in logs; the signature authenticates us to the receiver instead). Returns it
/// normalised, as it will be requested.
pub fn validate_url(input: &str) -> Result<String, WebhookError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(WebhookError::BadUrl("give the URL events are posted to".into()));
    }
    if s.len() > 2000 {
        return Err(WebhookError::BadUrl("at most 2000 characters".into()));
    }
    let url = reqwest::Url::parse(s).map_err(|e| WebhookError::BadUrl(format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::BadUrl("must start with https:// or http://".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::BadUrl("must name a host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::BadUrl("must not contain a user name or password; verify our signature instead".into()));
    }
    let out = url.to_string();
    if out.len() > 2000 {
        return Err(WebhookError::BadUrl("at most 2000 characters".into()));
    }
    Ok(out)
}

/// `whsec_` + 40 alphanumerics (≈238 bits).
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", Alphanumeric.sample_string(&mut rand::thread_rng(), 40))
}

/// The `Vessel-Signature` header value for `body` sent at unix time `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

fn actor(account: Uuid) -> Actor {
    Actor { id: Some(account), kind: ActorKind::Reseller }
}

/// The audit actor and details for a change made in the panel (`None`) or through an API key
/// (the key's own actor and details, so a key's actions can be traced).
fn actor_via(account: Uuid, key: Option<&crate::api_keys::Principal>, details: serde_json::Value) -> (Actor, serde_json::Value) {
    match key {
        None => (actor(account), details),
        Some(p) => (p.actor(), p.details(details)),
    }
}

// ------------------------------------------------------------------ endpoints

pub async fn create_endpoint(pool: &PgPool, account: Uuid, url: &str, addr: Option<IpAddr>) -> Result<EndpointRow, WebhookError> {
    let mut tx = pool.begin().await?;
    let row = create_endpoint_in(&mut tx, account, url, addr, None).await?;
    tx.commit().await?;
    Ok(row)
}

/// As [`create_endpoint`], inside the caller's transaction (the API's idempotency transaction);
/// `api_key` names the key that asked, for the audit log.
pub async fn create_endpoint_in(
    tx: &mut crate::db::Tx<'_>,
    account: Uuid,
    url: &str,
    addr: Option<IpAddr>,
    api_key: Option<&crate::api_keys::Principal>,
) -> Result<EndpointRow, WebhookError> {
    let url = validate_url(url)?;
    if crate::db::accounts::account_facts(&mut **tx, account).await?.map(|(role, ..)| role) != Some(crate::accounts::Role::Reseller) {
        return Err(WebhookError::NotAllowed);
    }
    let row = sql::insert_endpoint(tx, account, &url, &new_secret()).await?;
    let (who, details) = actor_via(account, api_key, json!({ "url": url }));
    audit::record(&mut **tx, who, "webhook_endpoint.create", Some(("webhook_endpoint", row.id.to_string())), addr, details).await?;
    Ok(row)
}

pub async fn endpoints(pool: &PgPool, account: Uuid) -> Result<Vec<EndpointRow>, WebhookError> {
    Ok(sql::endpoints_of(pool, account).await?)
}

/// One of the account's endpoints (another account's is [`WebhookError::NotFound`]).
pub async fn endpoint(pool: &PgPool, account: Uuid, id: Uuid) -> Result<EndpointRow, WebhookError> {
    sql::endpoint_of(pool, account, id).await?.ok_or(WebhookError::NotFound)
}

/// A disabled endpoint is not sent to: events while it is disabled are not queued for it
/// (`emit_api_event` fans out to enabled endpoints), and deliveries queued before wait for it.
pub async fn set_enabled(pool: &PgPool, account: Uuid, id: Uuid, enabled: bool, addr: Option<IpAddr>) -> Result<(), WebhookError> {
    let mut tx = pool.begin().await?;
    if !sql::set_enabled(&mut tx, account, id, enabled).await? {
        return Err(WebhookError::NotFound);
    }
    let action = if enabled { "webhook_endpoint.enable" } else { "webhook_endpoint.disable" };
    audit::record(&mut *tx, actor(account), action, Some(("webhook_endpoint", id.to_string())), addr, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// A new secret, used from the next attempt on (the old one stops verifying at once).
pub async fn rotate_secret(pool: &PgPool, account: Uuid, id: Uuid, addr: Option<IpAddr>) -> Result<String, WebhookError> {
    let secret = new_secret();
    let mut tx = pool.begin().await?;
    if !sql::set_secret(&mut tx, account, id, &secret).await? {
        return Err(WebhookError::NotFound);
    }
    audit::record(&mut *tx, actor(account), "webhook_endpoint.rotate_secret", Some(("webhook_endpoint", id.to_string())), addr, json!({}))
        .await?;
    tx.commit().await?;
    Ok(secret)
}

/// Deletes one of the account's endpoints; `api_key` names the key that asked, if one did.
pub async fn delete_endpoint(
    pool: &PgPool,
    account: Uuid,
    id: Uuid,
    addr: Option<IpAddr>,
    api_key: Option<&crate::api_keys::Principal>,
) -> Result<(), WebhookError> {
    let mut tx = pool.begin().await?;
    if !sql::delete_endpoint(&mut tx, account, id).await? {
        return Err(WebhookError::NotFound);
    }
    let (who, details) = actor_via(account, api_key, json!({}));
    audit::record(&mut *tx, who, "webhook_endpoint.delete", Some(("webhook_endpoint", id.to_string())), addr, details).await?;
    tx.commit().await?;
    Ok(())
}

/// The endpoint's newest deliveries, at most [`LOG_LIMIT`].
pub async fn deliveries(pool: &PgPool, account: Uuid, endpoint: Uuid) -> Result<Vec<DeliveryRow>, WebhookError> {
    Ok(sql::deliveries_of(pool, account, endpoint, LOG_LIMIT).await?)
}

/// Queues a failed delivery again, due now with a fresh count of attempts.
pub async fn send_again(pool: &PgPool, account: Uuid, endpoint: Uuid, delivery: i64, addr: Option<IpAddr>) -> Result<(), WebhookError> {
    let mut tx = pool.begin().await?;
    if sql::requeue_failed(&mut tx, account, endpoint, delivery).await?.is_none() {
        drop(tx);
        return Err(if sql::delivery_exists(pool, account, endpoint, delivery).await? {
            WebhookError::NotFailed
        } else {
            WebhookError::NotFound
        });
    }
    audit::record(
        &mut *tx,
        actor(account),
        "webhook_delivery.send_again",
        Some(("webhook_delivery", delivery.to_string())),
        addr,
        json!({ "endpoint": endpoint }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------ delivery

/// The wait after the `attempts`-th failure: base, 2×base, 4×base … capped, then jittered
/// down by up to a fifth so that deliveries that failed together do not retry together.
pub fn backoff(s: &WebhookSettings, attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 40) - 1;
    let ms = s.backoff_base_ms.max(1).saturating_mul(1u64 << exp.min(40)).min(s.backoff_max_secs.max(1).saturating_mul(1000));
    let jitter = rand::thread_rng().gen_range(0.8..=1.0);
    Duration::from_millis((ms as f64 * jitter) as u64)
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, IPv6 ULA),
/// link-local (cloud metadata services live there), carrier-grade NAT, documentation,
/// benchmarking, multicast, reserved or unspecified. IPv4-mapped IPv6 is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            // Prefixes that carry or translate to an IPv4 address (NAT64, 6to4, Teredo,
            // IPv4-compatible) are refused outright: behind DNS64 an internal A record comes
            // back as 64:ff9b::a.b.c.d, and judging only the IPv6 form would let it through.
            let embeds_v4 = (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0x0000)
                || s[..6].iter().all(|&x| x == 0);
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || embeds_v4
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x0100 && s[1..4].iter().all(|&x| x == 0))
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{host} is not a public address ({addrs}); deliveries go to public addresses only unless [webhooks] allow_private_addresses is set"
)]
struct NotPublic {
    host: String,
    addrs: String,
}

/// Resolves names like the system does, then keeps only public addresses, so a name cannot
/// point the worker at the provider's own network (checked at connection time, so a name
/// that changes its answer after the check gains nothing).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let addrs = all.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(Box::new(NotPublic { host, addrs }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends deliveries: one HTTP client, built once, that never follows redirects (a redirect
/// answer is a failure to fix at the receiver, not a place to send signed data).
#[derive(Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    settings: WebhookSettings,
}

#[derive(Debug)]
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

impl Deliverer {
    pub fn new(settings: WebhookSettings) -> Self {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Vessel-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private_addresses {
            // A proxy would resolve names itself, past the check.
            b = b.dns_resolver(Arc::new(PublicOnly)).no_proxy();
        }
        let http = b.build().expect("a reqwest client with static settings builds");
        Self { http, settings }
    }

    /// A URL whose host is a non-public IP literal (names are checked by [`PublicOnly`]).
    fn refused_literal(&self, url: &str) -> Option<String> {
        if self.settings.allow_private_addresses {
            return None;
        }
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?;
        let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        (!is_public(ip)).then(|| NotPublic { host: host.to_string(), addrs: ip.to_string() }.to_string())
    }

    /// The body exactly as signed and sent.
    pub fn body(d: &Claimed) -> Vec<u8> {
        let v = json!({ "id": d.event_id, "type": d.event_type, "created_at": d.event_created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "data": d.data });
        serde_json::to_vec(&v).expect("JSON values serialise")
    }

    async fn send(&self, d: &Claimed) -> Outcome {
        if let Some(error) = self.refused_literal(&d.url) {
            return Outcome::Failed { status: None, error };
        }
        let body = Self::body(d);
        let t = chrono::Utc::now().timestamp();
        let req = self
            .http
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Vessel-Event-Id", d.event_id.to_string())
            .header("Vessel-Event-Type", &d.event_type)
            .header("Vessel-Signature", signature(&d.secret, t, &body))
            .body(body);
        match req.send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered(r.status().as_u16()),
            Ok(r) => {
                let status = r.status();
                let error = if status.is_redirection() {
                    let to = r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
                    format!("HTTP {status}: redirects are not followed (to {to}); register the final URL")
                } else {
                    // At most 1 KiB of the answer is read: a receiver must not be able to
                    // fill the panel's memory with an endless error page.
                    let mut r = r;
                    let mut head = Vec::new();
                    while head.len() < 1024 {
                        match r.chunk().await {
                            Ok(Some(c)) => head.extend_from_slice(&c[..c.len().min(1024 - head.len())]),
                            _ => break,
                        }
                    }
                    let text: String = String::from_utf8_lossy(&head).chars().take(200).collect();
                    if text.trim().is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {}", text.trim())
                    }
                };
                Outcome::Failed { status: Some(status.as_u16()), error }
            }
            Err(e) if e.is_timeout() => {
                Outcome::Failed { status: None, error: format!("no answer within {} s", self.settings.timeout_secs) }
            }
            Err(e) => Outcome::Failed { status: None, error: error_chain(&e) },
        }
    }

    /// Claims and sends up to `batch` due deliveries concurrently. Returns how many were claimed.
    pub async fn deliver_due(&self, pool: &PgPool, batch: i64) -> Result<usize, WebhookError> {
        // The lease outlives the longest request, so no other worker takes a row this one
        // still sends; a crashed worker's rows come back when it ends.
        let lease = self.settings.timeout_secs as i64 + 30;
        let claimed = sql::claim_due(pool, batch, lease).await?;
        let n = claimed.len();
        let mut set = tokio::task::JoinSet::new();
        for d in claimed {
            let me = self.clone();
            let pool = pool.clone();
            set.spawn(async move { me.deliver_one(&pool, d).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Err(e)) => tracing::warn!(error = %e, "webhooks: could not record a delivery's outcome"),
                Err(e) => tracing::warn!(error = %e, "webhooks: a delivery task failed"),
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
    }

    async fn deliver_one(&self, pool: &PgPool, d: Claimed) -> Result<(), WebhookError> {
        match self.send(&d).await {
            Outcome::Delivered(status) => {
                sql::mark_delivered(pool, d.id, i32::from(status)).await?;
                tracing::info!(delivery = d.id, event = %d.event_id, r#type = %d.event_type, status, "webhook delivered");
            }
            Outcome::Failed { status, error } => {
                let attempts = d.attempts + 1;
                let retry = (attempts < self.settings.max_attempts).then(|| backoff(&self.settings, attempts));
                match retry {
                    Some(wait) => {
                        tracing::warn!(delivery = d.id, attempts, retry_in_ms = wait.as_millis() as u64, %error, "webhook not delivered; will retry")
                    }
                    None => tracing::warn!(delivery = d.id, attempts, %error, "webhook not delivered; giving up"),
                }
                sql::mark_attempt_failed(pool, d.id, status.map(i32::from), &error, retry.map(|w| w.as_secs_f64())).await?;
            }
        }
        Ok(())
    }
}

/// The error and its causes ("connection refused" is in a source, not the top message).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s.chars().take(500).collect()
}

/// Runs deliveries every `poll_ms` until the process ends.
pub fn spawn_worker(pool: PgPool, settings: WebhookSettings) -> tokio::task::JoinHandle<()> {
    let poll = Duration::from_millis(settings.poll_ms.max(50));
    let deliverer = Deliverer::new(settings);
    tokio::spawn(async move {
        loop {
            match deliverer.deliver_due(&pool, 20).await {
                Ok(n) if n > 0 => continue, // more may be waiting
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook worker: pass failed"),
            }
            tokio::time::sleep(poll).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            worker: true,
            poll_ms: 1000,
            timeout_secs: 10,
            max_attempts: 12,
            backoff_base_ms: 30_000,
            backoff_max_secs: 3600,
            allow_private_addresses: false,
        }
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        assert_eq!(validate_url(" https://hooks.example.com/vessel ").unwrap(), "https://hooks.example.com/vessel");
        assert_eq!(validate_url("http://10.0.0.5:8080/x?y=1").unwrap(), "http://10.0.0.5:8080/x?y=1");
        for bad in [
            "",
            "hooks.example.com/x",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "javascript:alert(1)",
            "https://",
        ] {
            assert!(matches!(validate_url(bad), Err(WebhookError::BadUrl(_))), "{bad:?}");
        }
        assert!(validate_url(&format!("https://example.com/{}", "a".repeat(2000))).is_err());
    }

    #[test]
    fn secrets_are_prefixed_long_and_fresh() {
        let s = new_secret();
        assert!(s.starts_with("whsec_") && s.len() >= 32, "{s}");
        assert_ne!(s, new_secret());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently (Python's hmac).
        assert_eq!(
            signature("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "ff02::1",
            "64:ff9b::a00:5",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "::127.0.0.1",
            "2002:a00:5::1",
            "2001::1",
            "fec0::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        let d = Deliverer::new(settings());
        assert!(d.refused_literal("http://127.0.0.1:8080/x").is_some());
        assert!(d.refused_literal("http://[::1]/x").is_some());
        assert!(d.refused_literal("http://169.254.169.254/latest").is_some());
        assert!(d.refused_literal("https://1.1.1.1/x").is_none());
        assert!(d.refused_literal("https://hooks.example.com/x").is_none(), "names are checked when resolved");
        let open = Deliverer::new(WebhookSettings { allow_private_addresses: true, ..settings() });
        assert!(open.refused_literal("http://127.0.0.1:8080/x").is_none());
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down_only() {
        let s = settings();
        for _ in 0..50 {
            let b1 = backoff(&s, 1).as_millis();
            assert!((24_000..=30_000).contains(&b1), "{b1}");
            let b3 = backoff(&s, 3).as_millis();
            assert!((96_000..=120_000).contains(&b3), "{b3}");
            let b20 = backoff(&s, 20).as_millis();
            assert!((2_880_000..=3_600_000).contains(&b20), "{b20}");
        }
    }
}

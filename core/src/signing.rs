//! Request signing between the panel and a host, with the host's secret (given once at join).
//!
//! The signed string is
//! `METHOD \n path-and-query \n unix-timestamp \n nonce \n hex(sha256(body))`, the MAC is
//! HMAC-SHA256 with the secret, sent hex-encoded in `X-Vessel-Signature` next to
//! `X-Vessel-Timestamp` and `X-Vessel-Nonce`. The host's [`Verifier`] refuses a request whose
//! timestamp is more than [`WINDOW_SECS`] away from its clock, and a nonce it has already
//! seen inside that window, so a captured request cannot be replayed; TLS keeps it secret.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub const HEADER_TIMESTAMP: &str = "X-Vessel-Timestamp";
pub const HEADER_NONCE: &str = "X-Vessel-Nonce";
pub const HEADER_SIGNATURE: &str = "X-Vessel-Signature";

/// How far a request's timestamp may be from the host's clock, either way.
pub const WINDOW_SECS: i64 = 60;
/// Nonces remembered at most; when all are still inside the window the verifier refuses
/// new requests (fails closed) rather than forgetting one that could then be replayed.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;
/// Longest nonce accepted (a UUID is 36 characters).
pub const MAX_NONCE_LEN: usize = 128;
/// Shortest secret accepted: 128 bits.
pub const MIN_SECRET_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// A host's shared secret. Its `Debug` never shows the bytes, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct HostSecret(Vec<u8>);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret is not valid base64")]
    NotBase64,
    #[error("the secret is {0} bytes; at least {MIN_SECRET_LEN} are needed")]
    TooShort(usize),
}

impl HostSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(HostSecret(bytes))
    }
    /// Standard base64, surrounding whitespace ignored (a secret file may end in a newline).
    pub fn from_base64(s: &str) -> Result<Self, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(bytes)
    }
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HostSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostSecret(<redacted>)")
    }
}

/// The three signature headers of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

impl SignatureHeaders {
    /// `(name, value)` pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [(HEADER_TIMESTAMP, self.timestamp.as_str()), (HEADER_NONCE, self.nonce.as_str()), (HEADER_SIGNATURE, self.signature.as_str())]
    }
}

/// The string that is MACed. `path_and_query` is exactly what is on the request line
/// (e.g. `/v1/instances/…?x=1`), without scheme and authority.
pub fn canonical(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{}\n{}\n{}\n{}\n{}", method.to_ascii_uppercase(), path_and_query, timestamp, nonce, body_hash)
}

fn mac(secret: &HostSecret, canonical: &str) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    m.update(canonical.as_bytes());
    m
}

/// Signs a request with an explicit time and nonce (tests; a client uses [`sign_now`]).
pub fn sign(secret: &HostSecret, method: &str, path_and_query: &str, body: &[u8], timestamp: i64, nonce: &str) -> SignatureHeaders {
    let c = canonical(method, path_and_query, timestamp, nonce, body);
    SignatureHeaders {
        timestamp: timestamp.to_string(),
        nonce: nonce.to_string(),
        signature: hex::encode(mac(secret, &c).finalize().into_bytes()),
    }
}

/// Signs a request now, with a fresh random nonce (a v4 UUID: 122 random bits).
pub fn sign_now(secret: &HostSecret, method: &str, path_and_query: &str, body: &[u8]) -> SignatureHeaders {
    sign(secret, method, path_and_query, body, unix_now(), &uuid::Uuid::new_v4().to_string())
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Why a request's signature is refused. Every variant but `ReplayCacheFull` is a 401.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("timestamp is {skew} s away from the host's clock (at most {WINDOW_SECS} s allowed)")]
    Stale { skew: i64 },
    #[error("signed before the host started; sign again")]
    BeforeStart,
    #[error("bad signature")]
    BadSignature,
    #[error("nonce already used")]
    Replayed,
    #[error("too many recent requests to remember; retry later")]
    ReplayCacheFull,
}

/// The signature headers as found on a request (absent ones are `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// The host side: checks signatures and remembers the nonces it accepted.
pub struct Verifier {
    secret: HostSecret,
    cache: Mutex<ReplayCache>,
    /// Requests signed before this time are refused: the replay cache starts empty when the
    /// host restarts, so without it a request captured just before a restart could be
    /// replayed just after.
    not_before: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(secret: HostSecret) -> Self {
        Self::with_capacity(secret, DEFAULT_REPLAY_CAPACITY)
    }

    pub fn with_capacity(secret: HostSecret, capacity: usize) -> Self {
        Verifier { secret, cache: Mutex::new(ReplayCache::new(capacity)), not_before: i64::MIN }
    }

    /// Refuses requests signed before `ts` (a host passes its start time; a client that
    /// was refused signs again with a fresh timestamp).
    pub fn not_before(mut self, ts: i64) -> Self {
        self.not_before = ts;
        self
    }

    /// Checks a request at the host's current time.
    pub fn verify(&self, method: &str, path_and_query: &str, h: Presented<'_>, body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(method, path_and_query, h, body, unix_now())
    }

    /// Checks a request as if the host's clock said `now`. The MAC is checked before the
    /// nonce is remembered, so unsigned traffic cannot fill the cache.
    pub fn verify_at(&self, method: &str, path_and_query: &str, h: Presented<'_>, body: &[u8], now: i64) -> Result<(), VerifyError> {
        let ts_s = h.timestamp.ok_or(VerifyError::Missing(HEADER_TIMESTAMP))?;
        let nonce = h.nonce.ok_or(VerifyError::Missing(HEADER_NONCE))?;
        let sig_s = h.signature.ok_or(VerifyError::Missing(HEADER_SIGNATURE))?;
        let ts: i64 = ts_s.parse().map_err(|_| VerifyError::Malformed(HEADER_TIMESTAMP))?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(VerifyError::Malformed(HEADER_NONCE));
        }
        let sig = hex::decode(sig_s).map_err(|_| VerifyError::Malformed(HEADER_SIGNATURE))?;
        let skew = now.saturating_sub(ts);
        if skew.abs() > WINDOW_SECS {
            return Err(VerifyError::Stale { skew });
        }
        if ts < self.not_before {
            return Err(VerifyError::BeforeStart);
        }
        let c = canonical(method, path_and_query, ts, nonce, body);
        // Constant-time comparison.
        mac(&self.secret, &c).verify_slice(&sig).map_err(|_| VerifyError::BadSignature)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(nonce, ts, now)
    }
}

/// Nonces accepted within the window, oldest first, bounded in size.
#[derive(Debug)]
struct ReplayCache {
    capacity: usize,
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        ReplayCache { capacity: capacity.max(1), seen: HashMap::new(), order: VecDeque::new() }
    }

    fn insert(&mut self, nonce: &str, ts: i64, now: i64) -> Result<(), VerifyError> {
        // A nonce whose timestamp is out of the window can no longer be accepted anyway.
        // `order` is by acceptance, and timestamps within it differ by at most the window,
        // so sweep from the front while entries are expired.
        while let Some((t, _)) = self.order.front() {
            if now - *t > WINDOW_SECS {
                if let Some((_, n)) = self.order.pop_front() {
                    self.seen.remove(&n);
                }
            } else {
                break;
            }
        }
        if self.seen.contains_key(nonce) {
            return Err(VerifyError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            // Sweep the whole queue once (out-of-order timestamps), then fail closed.
            self.order.retain(|(t, _)| now - *t <= WINDOW_SECS);
            let keep: std::collections::HashSet<&String> = self.order.iter().map(|(_, n)| n).collect();
            self.seen.retain(|n, _| keep.contains(n));
            if self.seen.len() >= self.capacity {
                return Err(VerifyError::ReplayCacheFull);
            }
        }
        self.seen.insert(nonce.to_string(), ts);
        self.order.push_back((ts, nonce.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> HostSecret {
        HostSecret::from_bytes(vec![b; 32]).unwrap()
    }

    fn presented(h: &SignatureHeaders) -> Presented<'_> {
        Presented { timestamp: Some(&h.timestamp), nonce: Some(&h.nonce), signature: Some(&h.signature) }
    }

    #[test]
    fn canonical_string_is_the_documented_one() {
        let c = canonical("put", "/v1/instances/x?a=1", 1700000000, "n1", b"");
        assert_eq!(c, "PUT\n/v1/instances/x?a=1\n1700000000\nn1\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn a_signed_request_verifies_once_and_a_replay_is_refused() {
        let v = Verifier::new(secret(7));
        let h = sign(&secret(7), "POST", "/v1/instances/a/actions", b"{}", 1000, "nonce-1");
        assert_eq!(v.verify_at("POST", "/v1/instances/a/actions", presented(&h), b"{}", 1010), Ok(()));
        assert_eq!(v.verify_at("POST", "/v1/instances/a/actions", presented(&h), b"{}", 1011), Err(VerifyError::Replayed));
    }

    #[test]
    fn tampering_wrong_secret_and_missing_headers_are_refused() {
        let v = Verifier::new(secret(7));
        let h = sign(&secret(7), "PUT", "/v1/instances/a", b"{\"x\":1}", 1000, "n");
        assert_eq!(v.verify_at("PUT", "/v1/instances/a", presented(&h), b"{\"x\":2}", 1000), Err(VerifyError::BadSignature));
        assert_eq!(v.verify_at("PUT", "/v1/instances/b", presented(&h), b"{\"x\":1}", 1000), Err(VerifyError::BadSignature));
        assert_eq!(v.verify_at("GET", "/v1/instances/a", presented(&h), b"{\"x\":1}", 1000), Err(VerifyError::BadSignature));
        let other = sign(&secret(8), "PUT", "/v1/instances/a", b"{\"x\":1}", 1000, "n2");
        assert_eq!(v.verify_at("PUT", "/v1/instances/a", presented(&other), b"{\"x\":1}", 1000), Err(VerifyError::BadSignature));
        let mut p = presented(&h);
        p.nonce = None;
        assert_eq!(v.verify_at("PUT", "/v1/instances/a", p, b"{\"x\":1}", 1000), Err(VerifyError::Missing(HEADER_NONCE)));
        let mut p = presented(&h);
        p.signature = Some("zz");
        assert_eq!(v.verify_at("PUT", "/v1/instances/a", p, b"{\"x\":1}", 1000), Err(VerifyError::Malformed(HEADER_SIGNATURE)));
        // The refused attempts left the nonce unused: the genuine request still passes.
        assert_eq!(v.verify_at("PUT", "/v1/instances/a", presented(&h), b"{\"x\":1}", 1000), Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let v = Verifier::new(secret(1));
        let h = sign(&secret(1), "GET", "/v1/host", b"", 1000, "a");
        assert_eq!(v.verify_at("GET", "/v1/host", presented(&h), b"", 1061), Err(VerifyError::Stale { skew: 61 }));
        assert_eq!(v.verify_at("GET", "/v1/host", presented(&h), b"", 939), Err(VerifyError::Stale { skew: -61 }));
        assert_eq!(v.verify_at("GET", "/v1/host", presented(&h), b"", 1060), Ok(()));
    }

    #[test]
    fn the_replay_cache_is_bounded_forgets_expired_nonces_and_fails_closed() {
        let v = Verifier::with_capacity(secret(1), 2);
        let at = |n: &str, ts: i64, now: i64| {
            let h = sign(&secret(1), "GET", "/v1/host", b"", ts, n);
            v.verify_at("GET", "/v1/host", presented(&h), b"", now)
        };
        assert_eq!(at("a", 1000, 1000), Ok(()));
        assert_eq!(at("b", 1000, 1000), Ok(()));
        assert_eq!(at("c", 1000, 1000), Err(VerifyError::ReplayCacheFull));
        // Once "a" and "b" are past the window they are forgotten (they could not pass anyway).
        assert_eq!(at("c", 1061, 1061), Ok(()));
        assert_eq!(at("a", 1061, 1061), Ok(()));
        assert_eq!(at("a", 1061, 1062), Err(VerifyError::Replayed));
    }

    #[test]
    fn a_restarted_host_refuses_requests_signed_before_it_started() {
        let h = sign(&secret(1), "GET", "/v1/host", b"", 1000, "a");
        let restarted = Verifier::new(secret(1)).not_before(1001);
        assert_eq!(restarted.verify_at("GET", "/v1/host", presented(&h), b"", 1002), Err(VerifyError::BeforeStart));
        let fresh = sign(&secret(1), "GET", "/v1/host", b"", 1002, "a");
        assert_eq!(restarted.verify_at("GET", "/v1/host", presented(&fresh), b"", 1002), Ok(()));
    }

    #[test]
    fn secrets_round_trip_through_base64_and_never_show_in_debug() {
        let s = secret(9);
        assert_eq!(HostSecret::from_base64(&(s.to_base64() + "\n")).unwrap(), s);
        assert!(!format!("{s:?}").contains("9"));
        assert_eq!(HostSecret::from_bytes(vec![1; 4]), Err(SecretError::TooShort(4)));
        assert_eq!(HostSecret::from_base64("not base64!"), Err(SecretError::NotBase64));
    }
}

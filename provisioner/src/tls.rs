//! The API's TLS by default: with no certificate configured (and plain HTTP not asked for),
//! the provisioner serves a self-signed certificate it made itself, kept in
//! `<state_dir>/tls/` (key 0600). `provisioner join` makes it (or finds it) and sends its
//! SHA-256 to the panel, which then reaches this host through that pin only: no CA needed,
//! and nobody else's certificate is accepted.

use crate::config::{write_private, ConfigError};
use std::path::Path;

/// Makes a self-signed certificate and key at `cert` and `key` unless both exist already
/// (an existing pair is kept: the panel pinned it). `names` become its subject alternative
/// names (IP addresses or DNS names; the panel checks the pin, not the name, but other
/// clients may check names). Returns whether a new pair was made.
pub fn ensure_self_signed(cert: &Path, key: &Path, names: &[String]) -> Result<bool, ConfigError> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (true, false) | (false, true) => {
            // Half a pair is never completed: the other half could be anyone's.
            return Err(ConfigError::Tls(format!(
                "only one of {} and {} exists: remove it (and join again) or restore the other",
                cert.display(),
                key.display()
            )));
        }
        (false, false) => {}
    }
    // IP addresses and plain DNS names only: anything else would fail the whole certificate.
    let usable = |n: &&String| {
        n.parse::<std::net::IpAddr>().is_ok()
            || (!n.is_empty() && n.len() <= 253 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    };
    let mut names: Vec<String> = names.iter().filter(usable).cloned().collect();
    if names.is_empty() {
        names.push("vessel-provisioner".into());
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| ConfigError::Tls(format!("making a self-signed certificate: {e}")))?;
    // The key first: a certificate without its key is refused above, a key alone is not served.
    write_private(key, made.key_pair.serialize_pem().as_bytes())?;
    write_private(cert, made.cert.pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "made a self-signed TLS certificate for the API");
    Ok(true)
}

/// The host part of `url` (`https://10.0.0.5:8443/` → `10.0.0.5`, `https://[::1]:1` → `::1`).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') { v6.split_once(']')?.0 } else { authority.split(':').next()? };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pair_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
        assert!(ensure_self_signed(&c, &k, &["10.0.0.5".into()]).unwrap());
        assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
        let pin = crate::join::cert_sha256(&c).unwrap();
        assert!(!ensure_self_signed(&c, &k, &["10.0.0.5".into()]).unwrap());
        assert_eq!(crate::join::cert_sha256(&c).unwrap(), pin, "an existing certificate is kept");
        std::fs::remove_file(&k).unwrap();
        assert!(ensure_self_signed(&c, &k, &[]).is_err(), "half a pair is refused, not completed");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("https://10.0.0.5:8443").as_deref(), Some("10.0.0.5"));
        assert_eq!(url_host("https://h.example.com/x").as_deref(), Some("h.example.com"));
        assert_eq!(url_host("https://[fd00::5]:8443/").as_deref(), Some("fd00::5"));
        assert_eq!(url_host("nonsense"), None);
    }
}

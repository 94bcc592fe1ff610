//! How a customer gets into their VPS: SSH public keys and a root password *hash*.
//!
//! Both are validated here, once, so the panel never stores and the host never writes a line
//! that would break `authorized_keys` or `/etc/shadow` (a newline in a key is a second key; a
//! colon in a hash is a second shadow field). The clear password never reaches this crate: the
//! panel hashes it and only [`PasswordHash`] crosses to the host.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// Why a key or hash was refused; the text is shown to the customer as is.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AccessError {
    #[error("not an OpenSSH public key line (expected e.g. \"ssh-ed25519 AAAA… comment\")")]
    NotAKeyLine,
    #[error("key type {0:?} is not accepted: use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa")]
    UnsupportedType(String),
    #[error("the key's base64 body is damaged")]
    BadBase64,
    #[error("the key's body does not match its type {0:?}")]
    Malformed(String),
    #[error("RSA keys must have at least 2048 bits (this one has {0})")]
    RsaTooShort(usize),
    #[error("the key line is too long (at most 16 KiB)")]
    TooLong,
    #[error("a password hash must be a crypt(3) string in yescrypt ($y$) or SHA-512 ($6$) form")]
    BadPasswordHash,
    #[error("at most {max} SSH keys per server")]
    TooManyKeys { max: usize },
}

/// The key algorithms a customer may use. DSA and short RSA keys are refused (OpenSSH itself
/// no longer accepts DSA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SshKeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa,
}

impl SshKeyType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ssh-ed25519" => Self::Ed25519,
            "ecdsa-sha2-nistp256" => Self::EcdsaP256,
            "ecdsa-sha2-nistp384" => Self::EcdsaP384,
            "ecdsa-sha2-nistp521" => Self::EcdsaP521,
            "ssh-rsa" => Self::Rsa,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ssh-ed25519",
            Self::EcdsaP256 => "ecdsa-sha2-nistp256",
            Self::EcdsaP384 => "ecdsa-sha2-nistp384",
            Self::EcdsaP521 => "ecdsa-sha2-nistp521",
            Self::Rsa => "ssh-rsa",
        }
    }
}

/// One validated OpenSSH public key: `type base64 [comment]`, normalised to one line with
/// single spaces. The comment is kept (customers name their keys with it) but stripped of
/// anything that is not printable ASCII.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SshPublicKey {
    key_type: SshKeyType,
    blob: Vec<u8>,
    comment: String,
    /// RSA modulus size in bits; 0 for the fixed-size types.
    bits: usize,
}

/// Reads the SSH wire format's `string` (u32 length + bytes).
fn read_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let rest = &buf[4..];
    if rest.len() < len {
        return None;
    }
    let (s, tail) = rest.split_at(len);
    *buf = tail;
    Some(s)
}

/// Bits of an SSH `mpint` (big-endian, possibly with a leading zero byte).
fn mpint_bits(m: &[u8]) -> usize {
    let m = match m.iter().position(|&b| b != 0) {
        Some(i) => &m[i..],
        None => return 0,
    };
    (m.len() - 1) * 8 + (8 - m[0].leading_zeros() as usize)
}

impl SshPublicKey {
    pub const MAX_LINE: usize = 16 * 1024;

    /// Parses one `authorized_keys`-style line (no options prefix).
    pub fn parse(line: &str) -> Result<Self, AccessError> {
        let line = line.trim();
        if line.len() > Self::MAX_LINE {
            return Err(AccessError::TooLong);
        }
        if line.contains(['\n', '\r', '\0']) {
            return Err(AccessError::NotAKeyLine);
        }
        let mut parts = line.split_whitespace();
        let (Some(type_name), Some(b64)) = (parts.next(), parts.next()) else {
            return Err(AccessError::NotAKeyLine);
        };
        let key_type =
            SshKeyType::from_name(type_name).ok_or_else(|| AccessError::UnsupportedType(type_name.chars().take(40).collect()))?;
        let blob = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| AccessError::BadBase64)?;
        let malformed = || AccessError::Malformed(type_name.to_string());
        let mut buf = blob.as_slice();
        let inner_type = read_string(&mut buf).ok_or_else(malformed)?;
        if inner_type != type_name.as_bytes() {
            return Err(malformed());
        }
        let mut bits = 0;
        match key_type {
            SshKeyType::Ed25519 => {
                let pk = read_string(&mut buf).ok_or_else(malformed)?;
                if pk.len() != 32 {
                    return Err(malformed());
                }
            }
            SshKeyType::EcdsaP256 | SshKeyType::EcdsaP384 | SshKeyType::EcdsaP521 => {
                let curve = read_string(&mut buf).ok_or_else(malformed)?;
                let expected: &[u8] = match key_type {
                    SshKeyType::EcdsaP256 => b"nistp256",
                    SshKeyType::EcdsaP384 => b"nistp384",
                    _ => b"nistp521",
                };
                let point = read_string(&mut buf).ok_or_else(malformed)?;
                let coord = match key_type {
                    SshKeyType::EcdsaP256 => 32,
                    SshKeyType::EcdsaP384 => 48,
                    _ => 66,
                };
                if curve != expected || point.len() != 1 + 2 * coord || point[0] != 4 {
                    return Err(malformed());
                }
            }
            SshKeyType::Rsa => {
                let e = read_string(&mut buf).ok_or_else(malformed)?;
                let n = read_string(&mut buf).ok_or_else(malformed)?;
                if e.is_empty() || mpint_bits(e) < 2 {
                    return Err(malformed());
                }
                bits = mpint_bits(n);
                if bits < 2048 {
                    return Err(AccessError::RsaTooShort(bits));
                }
            }
        }
        if !buf.is_empty() {
            return Err(malformed());
        }
        let comment: String = parts.collect::<Vec<_>>().join(" ").chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(200).collect();
        Ok(Self { key_type, blob, comment, bits })
    }

    pub fn key_type(&self) -> SshKeyType {
        self.key_type
    }
    pub fn comment(&self) -> &str {
        &self.comment
    }
    /// RSA modulus size; `None` for the fixed-size types.
    pub fn rsa_bits(&self) -> Option<usize> {
        (self.key_type == SshKeyType::Rsa).then_some(self.bits)
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it (unpadded base64 of the blob's SHA-256).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
    }

    /// The line for `authorized_keys`.
    pub fn to_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.blob);
        if self.comment.is_empty() {
            format!("{} {b64}", self.key_type.name())
        } else {
            format!("{} {b64} {}", self.key_type.name(), self.comment)
        }
    }
}

impl fmt::Debug for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshPublicKey({} {})", self.key_type.name(), self.fingerprint())
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

impl std::str::FromStr for SshPublicKey {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, AccessError> {
        Self::parse(s)
    }
}

impl Serialize for SshPublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_line())
    }
}

impl<'de> Deserialize<'de> for SshPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A root password as `/etc/shadow` stores it: a crypt(3) string, yescrypt (`$y$…`, Debian
/// 11+'s default) or SHA-512 (`$6$…`). Only the character set crypt uses is allowed, so it can
/// be written into a shadow line or a cloud-init file without escaping. The Debug form hides it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        let ok_prefix = s.starts_with("$y$") || s.starts_with("$6$");
        let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'$' | b'=' | b','));
        // yescrypt ~73 chars, SHA-512 crypt ~106 with rounds=; anything far longer is not a hash.
        if !ok_prefix || !ok_chars || s.len() < 20 || s.len() > 256 || s.matches('$').count() < 3 {
            return Err(AccessError::BadPasswordHash);
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(…)")
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The customer's way in, carried by the instance spec (create, reinstall) and written into the
/// guest before its first boot: `/root/.ssh/authorized_keys` and root's `/etc/shadow` field.
/// Empty means "no way in set" (root stays locked), never "no password".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<SshPublicKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password_hash: Option<PasswordHash>,
}

impl Access {
    pub const MAX_KEYS: usize = 32;

    pub fn new(ssh_keys: Vec<SshPublicKey>, root_password_hash: Option<PasswordHash>) -> Result<Self, AccessError> {
        if ssh_keys.len() > Self::MAX_KEYS {
            return Err(AccessError::TooManyKeys { max: Self::MAX_KEYS });
        }
        Ok(Self { ssh_keys, root_password_hash })
    }

    /// The content of `/root/.ssh/authorized_keys`.
    pub fn authorized_keys(&self) -> String {
        self.ssh_keys.iter().map(|k| k.to_line() + "\n").collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ssh_keys.is_empty() && self.root_password_hash.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real keys made with ssh-keygen (public halves only).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ alice@laptop";
    const ED25519_FP: &str = "SHA256:j8B0kXG9gtQ6mWr/tQXpz0ekc7wHFvxNNKHcdOsmqz0";

    fn rsa_line(bits: usize) -> String {
        let mut blob = Vec::new();
        let mut put = |b: &[u8]| {
            blob.extend_from_slice(&(b.len() as u32).to_be_bytes());
            blob.extend_from_slice(b);
        };
        put(b"ssh-rsa");
        put(&[1, 0, 1]);
        let mut n = vec![0u8; bits / 8 + 1];
        n[1] = 0xc1; // top bit set after the sign byte
        put(&n);
        format!("ssh-rsa {} test", base64::engine::general_purpose::STANDARD.encode(blob))
    }

    #[test]
    fn an_ed25519_key_parses_and_has_ssh_keygens_fingerprint() {
        let k = SshPublicKey::parse(ED25519).unwrap();
        assert_eq!(k.key_type(), SshKeyType::Ed25519);
        assert_eq!(k.comment(), "alice@laptop");
        assert_eq!(k.fingerprint(), ED25519_FP);
        assert_eq!(k.to_line(), ED25519);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<SshPublicKey>(&json).unwrap(), k);
    }

    #[test]
    fn rsa_below_2048_bits_is_refused_and_2048_accepted() {
        assert_eq!(SshPublicKey::parse(&rsa_line(1024)).unwrap_err(), AccessError::RsaTooShort(1024));
        assert_eq!(SshPublicKey::parse(&rsa_line(2048)).unwrap().rsa_bits(), Some(2048));
    }

    #[test]
    fn damaged_and_foreign_lines_are_refused() {
        assert_eq!(SshPublicKey::parse("hello").unwrap_err(), AccessError::NotAKeyLine);
        assert!(matches!(SshPublicKey::parse("ssh-dss AAAA").unwrap_err(), AccessError::UnsupportedType(_)));
        assert_eq!(SshPublicKey::parse("ssh-ed25519 !!!").unwrap_err(), AccessError::BadBase64);
        // An ed25519 body under an RSA name.
        let swapped = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(matches!(SshPublicKey::parse(&swapped).unwrap_err(), AccessError::Malformed(_)));
        // A second key smuggled in by a newline.
        let two = format!("{ED25519}\n{ED25519}");
        assert_eq!(SshPublicKey::parse(&two).unwrap_err(), AccessError::NotAKeyLine);
    }

    #[test]
    fn password_hashes_are_crypt_strings_and_never_print() {
        let y = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";
        let h = PasswordHash::parse(y).unwrap();
        assert_eq!(h.as_str(), y);
        assert_eq!(format!("{h:?}"), "PasswordHash(…)");
        assert!(PasswordHash::parse("hunter2").is_err());
        assert!(PasswordHash::parse("$1$abc$def").is_err(), "MD5 crypt is refused");
        assert!(PasswordHash::parse(&format!("{y}:0:99999")).is_err(), "a colon would add shadow fields");
        assert!(PasswordHash::parse(&format!("{y}\nroot2")).is_err());
    }

    #[test]
    fn access_round_trips_and_writes_authorized_keys() {
        let a = Access::new(vec![SshPublicKey::parse(ED25519).unwrap()], None).unwrap();
        assert_eq!(a.authorized_keys(), format!("{ED25519}\n"));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Access>(&json).unwrap(), a);
        assert_eq!(serde_json::from_str::<Access>("{}").unwrap(), Access::default());
    }
}

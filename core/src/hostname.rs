//! Hostnames customers choose for their VPS.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use thiserror::Error;

/// A DNS hostname (RFC 1123): labels of letters, digits and inner hyphens, at most 63 bytes
/// each and 253 in all. Stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Hostname(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostnameError {
    #[error("a hostname cannot be empty")]
    Empty,
    #[error("a hostname is at most 253 characters")]
    TooLong,
    #[error("each part between dots must be 1 to 63 characters")]
    BadLabelLength,
    #[error("use only letters, digits and hyphens, and do not start or end a part with a hyphen")]
    BadCharacter,
}

impl Hostname {
    pub fn parse(s: &str) -> Result<Self, HostnameError> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return Err(HostnameError::Empty);
        }
        if s.len() > 253 {
            return Err(HostnameError::TooLong);
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(HostnameError::BadLabelLength);
            }
            if label.starts_with('-') || label.ends_with('-') || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(HostnameError::BadCharacter);
            }
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hostname {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hostname::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn accepts_and_refuses() {
        assert_eq!(Hostname::parse("Web-1.Example.com.").unwrap().as_str(), "web-1.example.com");
        assert_eq!(Hostname::parse(""), Err(HostnameError::Empty));
        assert_eq!(Hostname::parse("-a"), Err(HostnameError::BadCharacter));
        assert_eq!(Hostname::parse("a..b"), Err(HostnameError::BadLabelLength));
        assert_eq!(Hostname::parse("a_b"), Err(HostnameError::BadCharacter));
        assert_eq!(Hostname::parse(&"a".repeat(64)), Err(HostnameError::BadLabelLength));
    }
}

//! Money: integer minor units with an ISO 4217 currency, never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 code: three uppercase letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Currency([u8; 3]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a currency is a three-letter ISO 4217 code such as EUR or USD (got {0:?})")]
pub struct CurrencyError(pub String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, CurrencyError> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(|c| c.is_ascii_uppercase()) {
            Ok(Self([b[0], b[1], b[2]]))
        } else {
            Err(CurrencyError(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
    /// Digits after the decimal point (ISO 4217 exponent) for the currencies we display.
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "JPY" | "KRW" | "CLP" | "ISK" | "VND" => 0,
            "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in minor units (cents), with its currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(exp);
        write!(f, "{sign}{}.{:0width$} {}", abs / scale, abs % scale, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn formats_minor_units() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(Money::new(1999, eur).to_string(), "19.99 EUR");
        assert_eq!(Money::new(-5, eur).to_string(), "-0.05 EUR");
        assert_eq!(Money::new(500, Currency::parse("JPY").unwrap()).to_string(), "500 JPY");
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
    }
}

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

/// "25", "25.5" or "25.50" in a currency's major unit, to minor units; never floats.
pub fn parse_amount(s: &str, currency: crate::money::Currency) -> Result<crate::money::Money, String> {
    let s = s.trim().replace(',', ".");
    let exp = currency.exponent() as usize;
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let ok = !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok || frac.len() > exp {
        return Err(format!("write an amount such as 25 or 25.{} (at most {exp} decimals)", "0".repeat(exp.max(1))));
    }
    let whole: i64 = whole.parse().map_err(|_| "the amount is too large".to_string())?;
    let frac_val: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<exp$}").parse().map_err(|_| "bad decimals".to_string())? };
    let minor = whole.checked_mul(10i64.pow(exp as u32)).and_then(|w| w.checked_add(frac_val)).ok_or("the amount is too large")?;
    if minor <= 0 {
        return Err("the amount must be more than zero".into());
    }
    Ok(crate::money::Money::new(minor, currency))
}

#[cfg(test)]
mod amount_tests {
    use super::{parse_amount, Currency};

    #[test]
    fn amounts_in_major_units() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(parse_amount("25", eur).unwrap().minor, 2500);
        assert_eq!(parse_amount("25.5", eur).unwrap().minor, 2550);
        assert_eq!(parse_amount("0,07", eur).unwrap().minor, 7);
        for bad in ["", "-1", "1.234", "abc", "0", "1e3", "99999999999999999999"] {
            assert!(parse_amount(bad, eur).is_err(), "{bad}");
        }
        assert_eq!(parse_amount("500", Currency::parse("JPY").unwrap()).unwrap().minor, 500);
        assert!(parse_amount("5.1", Currency::parse("JPY").unwrap()).is_err());
    }
}

//! Overcommit ratios, exact to a thousandth.
//!
//! A ratio is kept as an integer number of thousandths so that the admission rule can be
//! decided with exact rational arithmetic: three instances of ratio 3.0 on one core fill it
//! exactly, with no rounding that would refuse the third.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use thiserror::Error;

/// An overcommit ratio ρ ≥ 1, e.g. 4.0 means four sold units per physical unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ratio {
    milli: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RatioError {
    #[error("must be a number of at least 1.0 (got {0})")]
    BelowOne(String),
    #[error("must be at most {max} (got {got})", max = Ratio::MAX_MILLI / 1000)]
    TooLarge { got: String },
    #[error("must have at most three decimals (got {0})")]
    TooPrecise(String),
}

impl Ratio {
    /// 1.0: dedicated, nothing overcommitted.
    pub const ONE: Ratio = Ratio { milli: 1000 };
    /// Nobody sells a hundredfold overcommit; a bigger number is a typo.
    pub const MAX_MILLI: u32 = 100_000;

    /// From thousandths: `Ratio::from_milli(1500)` is 1.5.
    pub fn from_milli(milli: u32) -> Result<Self, RatioError> {
        if milli < 1000 {
            return Err(RatioError::BelowOne(format!("{}", milli as f64 / 1000.0)));
        }
        if milli > Self::MAX_MILLI {
            return Err(RatioError::TooLarge { got: format!("{}", milli as f64 / 1000.0) });
        }
        Ok(Self { milli })
    }

    /// From a decimal as written in a plan file (`4.0`, `1.5`).
    pub fn from_f64(value: f64) -> Result<Self, RatioError> {
        if !value.is_finite() || value < 1.0 {
            return Err(RatioError::BelowOne(value.to_string()));
        }
        if value > (Self::MAX_MILLI / 1000) as f64 {
            return Err(RatioError::TooLarge { got: value.to_string() });
        }
        let milli = (value * 1000.0).round();
        if ((milli / 1000.0) - value).abs() > 1e-9 {
            return Err(RatioError::TooPrecise(value.to_string()));
        }
        Self::from_milli(milli as u32)
    }

    pub fn milli(self) -> u32 {
        self.milli
    }

    pub fn as_f64(self) -> f64 {
        self.milli as f64 / 1000.0
    }

    pub fn is_one(self) -> bool {
        self.milli == 1000
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.milli / 1000;
        let frac = self.milli % 1000;
        if frac == 0 {
            write!(f, "{whole}.0")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Ratio::from_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(Ratio::from_f64(1.5).unwrap().milli(), 1500);
        assert_eq!(Ratio::from_f64(4.0).unwrap().to_string(), "4.0");
        assert_eq!(Ratio::from_f64(1.25).unwrap().to_string(), "1.25");
        assert!(Ratio::from_f64(0.99).is_err());
        assert!(Ratio::from_f64(f64::NAN).is_err());
        assert!(Ratio::from_f64(1.0001).is_err());
        assert!(Ratio::from_f64(1000.0).is_err());
        assert!(Ratio::from_milli(999).is_err());
    }
}

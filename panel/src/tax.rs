//! Tax from facts, not from a text box (issue 14).
//!
//! * A **country** is a code of ISO 3166-1 (the `iso_countries` table, from Debian's
//!   iso-codes); forms offer them as a select and the server checks the code
//!   ([`check_country`]), so `XX` or `Germany` is refused with a clear error.
//! * A **VAT ID** is checked for the format of its EU member state ([`VatId::parse`]: the
//!   prefix must be the customer's country's, the number that country's pattern); it is stored
//!   normalised with when it was checked. No online (VIES) lookup is made: the check is the
//!   format, and the invoice says so.
//! * The **rate** is decided once, in the database (`tax_treatment` / `tax_rate_for`, see the
//!   migration `tax_facts`), from the seller's country (configuration, `[billing.seller]`)
//!   and the buyer's country and VAT ID: EU consumers pay their country's VAT, EU businesses
//!   with a VAT ID in another member state are reverse-charged (0 %, with the note), buyers
//!   outside the EU pay none (export), an unknown country pays the seller's rate. Every invoice
//!   keeps the seller's and the buyer's facts as they were when it was written.

use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error("choose your country from the list (an ISO 3166-1 code such as DE or FR); {0:?} is not one")]
    BadCountry(String),
    #[error("a VAT ID is for businesses in an EU member state: choose your country first")]
    VatNeedsEuCountry,
    #[error("{id:?} is not a valid VAT ID for {country}: it should look like {example}")]
    BadVatId { id: String, country: String, example: &'static str },
}

/// The VAT number prefix of an EU member state (Greece uses EL), with its number's pattern
/// and an example; `None` outside the EU.
fn vat_format(country: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match country {
        "AT" => ("AT", r"U\d{8}", "ATU12345678"),
        "BE" => ("BE", r"[01]\d{9}", "BE0123456789"),
        "BG" => ("BG", r"\d{9,10}", "BG123456789"),
        "CY" => ("CY", r"\d{8}[A-Z]", "CY12345678X"),
        "CZ" => ("CZ", r"\d{8,10}", "CZ12345678"),
        "DE" => ("DE", r"\d{9}", "DE123456789"),
        "DK" => ("DK", r"\d{8}", "DK12345678"),
        "EE" => ("EE", r"\d{9}", "EE123456789"),
        "GR" => ("EL", r"\d{9}", "EL123456789"),
        "ES" => ("ES", r"[A-Z0-9]\d{7}[A-Z0-9]", "ESX1234567X"),
        "FI" => ("FI", r"\d{8}", "FI12345678"),
        "FR" => ("FR", r"[A-HJ-NP-Z0-9]{2}\d{9}", "FRXX123456789"),
        "HR" => ("HR", r"\d{11}", "HR12345678901"),
        "HU" => ("HU", r"\d{8}", "HU12345678"),
        "IE" => ("IE", r"\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W]", "IE1234567X"),
        "IT" => ("IT", r"\d{11}", "IT12345678901"),
        "LT" => ("LT", r"\d{9}|\d{12}", "LT123456789"),
        "LU" => ("LU", r"\d{8}", "LU12345678"),
        "LV" => ("LV", r"\d{11}", "LV12345678901"),
        "MT" => ("MT", r"\d{8}", "MT12345678"),
        "NL" => ("NL", r"\d{9}B\d{2}", "NL123456789B01"),
        "PL" => ("PL", r"\d{10}", "PL1234567890"),
        "PT" => ("PT", r"\d{9}", "PT123456789"),
        "RO" => ("RO", r"\d{2,10}", "RO1234567890"),
        "SE" => ("SE", r"\d{10}01", "SE123456789001"),
        "SI" => ("SI", r"\d{8}", "SI12345678"),
        "SK" => ("SK", r"\d{10}", "SK1234567890"),
        _ => return None,
    })
}

/// Is `country` (an ISO code) an EU member state, for VAT?
pub fn is_eu(country: &str) -> bool {
    vat_format(country).is_some()
}

/// A VAT ID whose format matches its member state: prefix and number, upper case, no spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VatId(String);

impl VatId {
    /// Checks `input` for a customer in `country`: spaces, dots and dashes are ignored, the
    /// prefix may be left out, and it must be the country's own.
    pub fn parse(country: &str, input: &str) -> Result<VatId, TaxError> {
        let (prefix, pattern, example) = vat_format(country).ok_or(TaxError::VatNeedsEuCountry)?;
        let s: String = input.chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '\u{a0}')).collect::<String>().to_uppercase();
        let number = s.strip_prefix(prefix).unwrap_or(&s);
        static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<&'static str, Regex>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let ok = {
            let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
            let re = c.entry(pattern).or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).expect("the VAT patterns are valid"));
            re.is_match(number)
        };
        if !ok {
            return Err(TaxError::BadVatId { id: input.trim().chars().take(40).collect(), country: country.to_string(), example });
        }
        Ok(VatId(format!("{prefix}{number}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `""` → `None`; a code of the list (any case) → `Some("DE")`; anything else a clear error.
pub async fn check_country<'e, E: sqlx::PgExecutor<'e>>(e: E, input: &str) -> Result<Result<Option<String>, TaxError>, sqlx::Error> {
    let c = input.trim().to_uppercase();
    if c.is_empty() {
        return Ok(Ok(None));
    }
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) || crate::db::accounts::country_name(e, &c).await?.is_none() {
        return Ok(Err(TaxError::BadCountry(input.trim().chars().take(40).collect())));
    }
    Ok(Ok(Some(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vat_ids_are_checked_per_member_state() {
        assert_eq!(VatId::parse("DE", "de 123 456 789").unwrap().as_str(), "DE123456789");
        assert_eq!(VatId::parse("DE", "123456789").unwrap().as_str(), "DE123456789");
        assert_eq!(VatId::parse("FR", "FR 40 303 265 045").unwrap().as_str(), "FR40303265045");
        assert_eq!(VatId::parse("GR", "EL123456789").unwrap().as_str(), "EL123456789");
        assert_eq!(VatId::parse("NL", "NL123456789B01").unwrap().as_str(), "NL123456789B01");
        assert!(matches!(VatId::parse("DE", "DE12345678"), Err(TaxError::BadVatId { .. })), "eight digits");
        assert!(matches!(VatId::parse("DE", "FR40303265045"), Err(TaxError::BadVatId { .. })), "another country's prefix");
        assert!(matches!(VatId::parse("FR", "FRIO303265045"), Err(TaxError::BadVatId { .. })), "I and O are not used");
        assert!(matches!(VatId::parse("US", "123"), Err(TaxError::VatNeedsEuCountry)));
        assert!(is_eu("AT") && !is_eu("GB") && !is_eu("US") && !is_eu("CH"));
    }
}

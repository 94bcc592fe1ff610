//! Accounts: email addresses, passwords (argon2id), and the admin account `vessel up` makes.

use crate::admin::AdminError;
use crate::db::accounts as sql;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::distributions::{Alphanumeric, DistString};
use std::fmt;

pg_enum! {
    /// Who an account is (`account_role` in the schema); it decides which pages and API scopes
    /// it may use.
    pub enum Role in "account_role" {
        Customer = "customer",
        Reseller = "reseller",
        Admin = "admin",
    }
}

pg_enum! {
    /// Whether an account may sign in and order (`account_status` in the schema).
    pub enum AccountStatus in "account_status" {
        /// Signed up, the verification mail not followed yet.
        PendingVerification = "pending_verification",
        Active = "active",
        /// By an admin, or by its reseller (then `suspended_by_reseller`).
        Suspended = "suspended",
        Closed = "closed",
    }
}

/// An email address, trimmed and lowercased. Deliverability is proven by the verification
/// mail, not by a regex; this only refuses what cannot be an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("{0:?} is not an email address: it needs a name, an @ and a domain, such as ana@example.com")]
    BadEmail(String),
    #[error("a password needs at least {min} characters", min = Password::MIN_LEN)]
    PasswordTooShort,
    #[error("{0} belongs to an account that is not an admin; use another address")]
    NotAnAdmin(String),
}

impl Email {
    pub fn parse(s: &str) -> Result<Self, AccountError> {
        let e = s.trim().to_lowercase();
        let ok = e.len() <= 254
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && match e.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok {
            Ok(Self(e))
        } else {
            Err(AccountError::BadEmail(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password in clear, only ever held briefly on the way to [`hash_password`].
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 12;
    pub fn parse(s: &str) -> Result<Self, AccountError> {
        if s.chars().count() < Self::MIN_LEN {
            return Err(AccountError::PasswordTooShort);
        }
        Ok(Self(s.to_string()))
    }
    /// A random 24-character password (about 142 bits).
    pub fn generate() -> Self {
        Self(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation),
/// as a PHC string that carries its own parameters and salt.
pub fn hash_password(p: &Password) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(p.0.as_bytes(), &salt).expect("argon2 with default parameters cannot fail").to_string()
}

pub fn verify_password(candidate: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(candidate.as_bytes(), &h).is_ok())
}

/// Creates the admin account, or sets its password if it exists. Refuses to turn a customer
/// or reseller into an admin.
pub async fn upsert_admin(pool: &sqlx::PgPool, email: &Email, password: &Password) -> Result<uuid::Uuid, AdminError> {
    let hash = hash_password(password);
    let mut tx = pool.begin().await?;
    let id = match sql::find_by_email(&mut tx, email.as_str()).await? {
        Some((id, Role::Admin)) => {
            sql::set_password(&mut tx, id, &hash).await?;
            id
        }
        Some(_) => {
            return Err(AdminError::Invalid { field: "email".into(), message: AccountError::NotAnAdmin(email.to_string()).to_string() })
        }
        None => sql::insert_admin(&mut tx, email.as_str(), &hash).await?,
    };
    tx.commit().await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Ana@Example.COM ").unwrap().as_str(), "ana@example.com");
        for bad in ["", "ana", "ana@", "@example.com", "ana@example", "a b@example.com", "a@@b.com", "a@b.com."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn argon2id_round_trip() {
        let p = Password::parse("correct horse battery").unwrap();
        let h = hash_password(&p);
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(Password::parse("short").is_err());
        assert_eq!(Password::generate().expose().len(), 24);
    }
}

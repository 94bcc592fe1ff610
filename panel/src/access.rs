//! The customer's way into their VPS: named SSH keys kept on the account, and a root password
//! chosen (or generated) at order, reinstall and reset time.
//!
//! The rule for the password is one for the web pages and the API: a password given is
//! checked and hashed; none given and no key either means one is generated and shown **once**
//! (a server nobody can log into is no server). Only the hash (SHA-512 crypt, what the guest's
//! `/etc/shadow` and cloud-init take) leaves this module: the clear password is never stored,
//! logged, audited or mailed. Hashing runs on the blocking pool (it is deliberately slow).

use crate::db::access as sql;
use crate::db::Tx;
use crate::ids::InstanceId;
use rand::Rng;
use sqlx::PgPool;
use thiserror::Error;
use uuid::Uuid;
use vessel_core::access::AccessError as KeyError;
use vessel_core::{Access, PasswordHash, SshPublicKey};

pub use sql::SshKeyRow;

#[derive(Debug, Error)]
pub enum AccessError {
    /// A key line that is not a usable OpenSSH public key (the text says why).
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Password(&'static str),
    #[error("you already have this key (same fingerprint)")]
    DuplicateKey,
    #[error("the key name must be 1 to 100 characters")]
    KeyName,
    #[error("no such SSH key")]
    UnknownKey,
    #[error("the server must be running to change its root password: start it first")]
    NotRunning,
    #[error("no such server")]
    NoServer,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl AccessError {
    /// The customer's mistake (shown to them), as opposed to ours (a 500).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, AccessError::Hash(_) | AccessError::Db(_) | AccessError::NoServer)
    }
    /// The form field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            AccessError::Key(_) | AccessError::DuplicateKey | AccessError::UnknownKey => "ssh_keys",
            AccessError::KeyName => "name",
            AccessError::NotRunning | AccessError::NoServer => "server",
            _ => "root_password",
        }
    }
}

pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 128;

/// A root password a customer chose: long enough, printable, no line breaks.
pub fn check_password(p: &str) -> Result<(), AccessError> {
    let n = p.chars().count();
    if n < MIN_PASSWORD {
        return Err(AccessError::Password("the root password must have at least 12 characters"));
    }
    if n > MAX_PASSWORD {
        return Err(AccessError::Password("the root password must have at most 128 characters"));
    }
    if p.chars().any(char::is_control) {
        return Err(AccessError::Password("the root password must not contain control characters or line breaks"));
    }
    Ok(())
}

/// 20 characters from an alphabet without look-alikes (about 115 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// SHA-512 crypt (`$6$rounds=…$salt$hash`) on the blocking pool.
pub async fn hash_password(clear: String) -> Result<PasswordHash, AccessError> {
    let hashed = tokio::task::spawn_blocking(move || {
        let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).map_err(|e| format!("{e:?}"))?;
        sha_crypt::sha512_simple(&clear, &params).map_err(|e| format!("{e:?}"))
    })
    .await
    .map_err(|e| AccessError::Hash(e.to_string()))?
    .map_err(AccessError::Hash)?;
    PasswordHash::parse(&hashed).map_err(|e| AccessError::Hash(e.to_string()))
}

/// What a customer or reseller asked for: keys (saved ones by id, or raw lines) and maybe a
/// password.
#[derive(Clone, Debug, Default)]
pub struct AccessRequest {
    pub saved_keys: Vec<Uuid>,
    pub key_lines: Vec<String>,
    pub root_password: Option<String>,
}

/// The access to send to the host, and the generated password to show once (if one was made).
pub struct Chosen {
    pub access: Access,
    pub generated_password: Option<String>,
}

impl std::fmt::Debug for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chosen")
            .field("access", &self.access)
            .field("generated_password", &self.generated_password.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Chosen {
    /// The fingerprints of the keys, for the "server ready" mail and page.
    pub fn fingerprints(&self) -> Vec<String> {
        self.access.ssh_keys.iter().map(SshPublicKey::fingerprint).collect()
    }
}

/// Validates a request into the access a server gets (the rule in the module doc).
pub async fn choose<'e, E: sqlx::PgExecutor<'e>>(e: E, account: Uuid, req: AccessRequest) -> Result<Chosen, AccessError> {
    let mut keys = Vec::new();
    if !req.saved_keys.is_empty() {
        let rows = sql::keys_by_id(e, account, &req.saved_keys).await?;
        if rows.len() != req.saved_keys.iter().collect::<std::collections::HashSet<_>>().len() {
            return Err(AccessError::UnknownKey);
        }
        for r in rows {
            keys.push(SshPublicKey::parse(&r.public_key)?);
        }
    }
    for line in &req.key_lines {
        keys.push(SshPublicKey::parse(line)?);
    }
    keys.dedup_by_key(|k| k.fingerprint());
    let given = req.root_password.filter(|p| !p.is_empty());
    let (hash, generated_password) = if given.is_some() || keys.is_empty() {
        let new = new_root_password(given).await?;
        (Some(new.hash), new.generated)
    } else {
        (None, None)
    };
    let access = Access::new(keys, hash)?;
    Ok(Chosen { access, generated_password })
}

/// A root password: the hash of the one given (checked), or of a generated one, which is then
/// returned to be shown once.
pub struct NewPassword {
    pub hash: PasswordHash,
    pub generated: Option<String>,
}

/// The one place a root password is checked or generated, then hashed: orders, reinstalls and
/// resets all come here.
pub async fn new_root_password(given: Option<String>) -> Result<NewPassword, AccessError> {
    match given.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_password(&p)?;
            Ok(NewPassword { hash: hash_password(p).await?, generated: None })
        }
        None => {
            let p = generate_password();
            Ok(NewPassword { hash: hash_password(p.clone()).await?, generated: Some(p) })
        }
    }
}

/// Records a new root password hash for a running server and queues the job that sets it on
/// the host (which reads the newest hash from the row, so a retried job sends the latest). The
/// caller has locked the instance and checked who may act on it.
pub async fn record_password_reset(
    tx: &mut Tx<'_>,
    instance: InstanceId,
    desired_state: crate::vps::DesiredState,
    hash: PasswordHash,
) -> Result<(), AccessError> {
    if desired_state != crate::vps::DesiredState::Running {
        return Err(AccessError::NotRunning);
    }
    let mut access = sql::instance_access(&mut **tx, instance).await?.ok_or(AccessError::NoServer)?;
    access.root_password_hash = Some(hash);
    sql::set_instance_access(tx, instance, &access).await?;
    crate::jobs::enqueue(tx, crate::jobs::Job::ResetPassword { instance_id: instance }).await?;
    Ok(())
}

/// A customer's own server, locked; `NoServer` for anyone else's (a 404, never a 403).
/// Returns the generated password, if one was made, to show once.
pub async fn reset_customer_password(
    pool: &PgPool,
    customer: Uuid,
    instance: InstanceId,
    given: Option<String>,
) -> Result<Option<String>, AccessError> {
    let new = new_root_password(given).await?;
    let mut tx = pool.begin().await?;
    let desired = sql::lock_customer_instance(&mut tx, customer, instance).await?.ok_or(AccessError::NoServer)?;
    record_password_reset(&mut tx, instance, desired, new.hash).await?;
    crate::audit::record(
        &mut *tx,
        crate::audit::Actor { id: Some(customer), kind: crate::audit::ActorKind::Customer },
        "server.reset_password",
        Some(("instance", instance.to_string())),
        None,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(new.generated)
}

/// Adds a named key to an account.
pub async fn add_key(pool: &PgPool, account: Uuid, name: &str, line: &str) -> Result<Uuid, AccessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AccessError::KeyName);
    }
    let key = SshPublicKey::parse(line)?;
    sql::insert_key(pool, account, name, &key.to_line(), &key.fingerprint()).await?.ok_or(AccessError::DuplicateKey)
}

pub async fn keys_of(pool: &PgPool, account: Uuid) -> Result<Vec<SshKeyRow>, AccessError> {
    Ok(sql::keys_of(pool, account).await?)
}

pub async fn delete_key(pool: &PgPool, account: Uuid, id: Uuid) -> Result<(), AccessError> {
    if sql::delete_key(pool, account, id).await? {
        Ok(())
    } else {
        Err(AccessError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_sha512_crypt_that_verify_and_differ_per_salt() {
        let a = hash_password("correct horse battery".into()).await.unwrap();
        let b = hash_password("correct horse battery".into()).await.unwrap();
        assert!(a.as_str().starts_with("$6$"), "{}", a.as_str());
        assert_ne!(a, b, "a fresh salt each time");
        assert!(sha_crypt::sha512_check("correct horse battery", a.as_str()).is_ok());
        assert!(sha_crypt::sha512_check("wrong", a.as_str()).is_err());
    }

    #[test]
    fn passwords_are_checked_and_generated_ones_are_strong() {
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_password("has a\nline break").is_err());
        let g = generate_password();
        assert_eq!(g.len(), 20);
        assert!(check_password(&g).is_ok());
        assert_ne!(g, generate_password());
    }
}

//! Access keys: the credentials callers sign AWS-style requests with.
//!
//! SigV4 is an HMAC over the request keyed by the secret, so the server needs the
//! secret itself; a one-way hash cannot verify a signature. Secrets are therefore
//! stored encrypted (ChaCha20-Poly1305) under a 256-bit master key that lives in a
//! separate `0600` file in the data directory: a copy of the database alone reveals
//! no secret. Decrypted secrets are cached in memory for the request path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::Serialize;

use crate::StoreError;

/// A key as listed (never with its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub description: String,
    pub created_at: String,
}

/// A freshly created key: the only time its secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct NewAccessKey {
    #[serde(flatten)]
    pub key: AccessKey,
    pub secret_access_key: String,
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// A new key: a fresh random id (`NIMB` and 16 more letters or digits)
    /// and secret (40 characters), returned this once. Secrets are sealed
    /// at rest: what the backend stores never holds one in clear.
    async fn create(&self, description: &str) -> Result<NewAccessKey, StoreError>;
    /// Stores a key whose secret was chosen elsewhere (e.g. from the environment).
    /// An id already stored gets the new secret and description and keeps
    /// its creation time (the server imports its key at every start).
    /// [`StoreError::Invalid`] unless the id is 16–128 letters or digits not
    /// starting with `NIMF` (function credentials) and the secret is at
    /// least 16 characters.
    async fn import(
        &self,
        access_key_id: &str,
        secret: &str,
        description: &str,
    ) -> Result<(), StoreError>;
    /// Every key, by creation time then id, never with its secret.
    async fn list(&self) -> Result<Vec<AccessKey>, StoreError>;
    /// Returns whether the key existed. Revocation is immediate: once this
    /// returns, [`KeyStore::secret`] on this store answers `None`, also when
    /// a lookup was racing the delete.
    async fn delete(&self, access_key_id: &str) -> Result<bool, StoreError>;
    /// The secret of a key, for signature verification: an operator key or
    /// registered function credentials; `None` for an unknown id. A secret
    /// that cannot be unsealed (another master key) is an error, never a
    /// wrong secret.
    async fn secret(&self, access_key_id: &str) -> Result<Option<Arc<str>>, StoreError>;
    /// The credentials of one function's instances, registered for
    /// verification. Derived (never stored) from the master key, the function's
    /// name and `generation` (its creation time: a function deleted and created
    /// again gets new credentials).
    fn function_credentials(&self, function: &str, generation: &str) -> FunctionCredentials;
    /// Stops accepting a function's credentials (the function was deleted).
    fn forget_function(&self, function: &str);
    /// The function whose instances hold `access_key_id`, if it is one's.
    fn function_of(&self, access_key_id: &str) -> Option<String>;
}

/// What a function's instances sign their AWS calls with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Prefix of function credentials' key ids (operator keys start with NIMB).
pub(crate) const FUNCTION_KEY_PREFIX: &str = "NIMF";

/// The credentials of functions' instances that a node accepts: derived
/// from the master key when a function is registered, kept in memory only
/// (every node derives the same ones), whatever backend stores the keys.
pub(crate) struct FunctionKeys {
    /// HMAC key for function credentials, derived from the master key (so
    /// the master key itself is used for one purpose only per derivation).
    secret: [u8; 32],
    registered: RwLock<RegisteredFunctions>,
}

/// Key id → (function, secret), and function → its key id.
#[derive(Default)]
struct RegisteredFunctions {
    by_id: HashMap<String, (String, Arc<str>)>,
    by_function: HashMap<String, String>,
}

impl FunctionKeys {
    pub(crate) fn new(master_key: &[u8; MASTER_KEY_BYTES]) -> Self {
        use sha2::{Digest, Sha256};
        let secret: [u8; 32] = Sha256::new()
            .chain_update(b"nimbus function credentials v1\0")
            .chain_update(master_key)
            .finalize()
            .into();
        Self {
            secret,
            registered: RwLock::default(),
        }
    }

    /// HMAC-SHA256 under the function-credentials key.
    fn derive(&self, parts: &[&str]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().into()
    }

    /// See [`KeyStore::function_credentials`].
    pub(crate) fn register(&self, function: &str, generation: &str) -> FunctionCredentials {
        use base64::Engine;
        let id_bytes = self.derive(&["id", function, generation]);
        let access_key_id = format!("{FUNCTION_KEY_PREFIX}{}", hex::encode_upper(&id_bytes[..8]));
        let secret_access_key = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(self.derive(&["secret", function, generation]))
            .chars()
            .take(40)
            .collect::<String>();
        let mut keys = self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = keys
            .by_function
            .insert(function.to_string(), access_key_id.clone())
            && old != access_key_id
        {
            keys.by_id.remove(&old);
        }
        keys.by_id.insert(
            access_key_id.clone(),
            (function.to_string(), secret_access_key.as_str().into()),
        );
        FunctionCredentials {
            access_key_id,
            secret_access_key,
        }
    }

    /// See [`KeyStore::forget_function`].
    pub(crate) fn forget(&self, function: &str) {
        let mut keys = self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = keys.by_function.remove(function) {
            keys.by_id.remove(&id);
        }
    }

    /// See [`KeyStore::function_of`].
    pub(crate) fn function_of(&self, access_key_id: &str) -> Option<String> {
        self.lookup(access_key_id).map(|(f, _)| f)
    }

    /// The secret of registered credentials; `None` for any other id.
    pub(crate) fn secret(&self, access_key_id: &str) -> Option<Arc<str>> {
        self.lookup(access_key_id).map(|(_, s)| s)
    }

    fn lookup(&self, access_key_id: &str) -> Option<(String, Arc<str>)> {
        self.registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .get(access_key_id)
            .cloned()
    }
}

/// What [`KeyStore::import`] accepts, whatever the backend.
pub(crate) fn check_import(access_key_id: &str, secret: &str) -> Result<(), StoreError> {
    let valid_id = (16..=128).contains(&access_key_id.len())
        && access_key_id.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid_id || secret.len() < 16 {
        return Err(nimbus_core::ValidationError::param(
            "an access key id must be 16-128 letters or digits and its secret at least 16 characters",
        )
        .into());
    }
    if access_key_id.starts_with(FUNCTION_KEY_PREFIX) {
        // Such an id is looked up among function credentials only: the
        // key would be stored but never verify.
        return Err(nimbus_core::ValidationError::param(format!(
            "access key ids starting with {FUNCTION_KEY_PREFIX} are reserved for function credentials"
        ))
        .into());
    }
    Ok(())
}

pub(crate) const MASTER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

pub(crate) fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| StoreError::Task(format!("no randomness available: {e}")))?;
    Ok(b)
}

/// Reads the master key, creating it (mode 0600) on first use.
///
/// Creation is atomic: the key is written to a temporary file in the same
/// directory, fsynced, linked to its final name (which fails if another start
/// won the race, whose key is then read) and the directory is fsynced. A crash
/// at any point leaves either no `master.key` or a whole one, never a short
/// file, and never a key that sealed rows depend on but the disk forgot.
pub fn load_or_create_master_key(path: &Path) -> Result<[u8; MASTER_KEY_BYTES], StoreError> {
    use std::io::Write;
    match std::fs::read(path) {
        Ok(b) if b.len() == MASTER_KEY_BYTES => {
            let mut k = [0u8; MASTER_KEY_BYTES];
            k.copy_from_slice(&b);
            Ok(k)
        }
        Ok(b) => Err(StoreError::Corrupt(format!(
            "{} holds {} bytes, not a {MASTER_KEY_BYTES}-byte key; it was not written by nimbus \
             (which creates it atomically): restore it from a backup, or, if no sealed secrets \
             need it, delete it together with nimbus.db's access keys",
            path.display(),
            b.len()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let key = random::<MASTER_KEY_BYTES>()?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".master.key-")
                .tempfile_in(dir)
                .map_err(|e| StoreError::io(dir, e))?;
            // tempfile creates files 0600.
            tmp.write_all(&key)
                .and_then(|_| tmp.as_file().sync_all())
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            match tmp.persist_noclobber(path) {
                Ok(_) => {}
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    return load_or_create_master_key(path);
                }
                Err(e) => return Err(StoreError::io(path, e.error)),
            }
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(dir, e))?;
            Ok(key)
        }
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Characters of generated ids and secrets (unambiguous, URL- and shell-safe).
pub(crate) const ID_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ234567";
pub(crate) const SECRET_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub(crate) fn random_string(
    prefix: &str,
    len: usize,
    alphabet: &[u8],
) -> Result<String, StoreError> {
    let bytes = random::<64>()?;
    let mut s = String::from(prefix);
    // 64 random bytes, each mapped with rejection of the biased tail.
    let limit = 256 - (256 % alphabet.len());
    for b in bytes
        .iter()
        .copied()
        .filter(|b| (*b as usize) < limit)
        .take(len - prefix.len())
    {
        s.push(alphabet[b as usize % alphabet.len()] as char);
    }
    if s.len() < len {
        return random_string(prefix, len, alphabet);
    }
    Ok(s)
}

pub(crate) fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Encrypts `msg` under the master key with a fresh nonce; `aad` (the row's id)
/// is bound as associated data, so a ciphertext moved to another row fails.
pub(crate) fn seal(
    cipher: &ChaCha20Poly1305,
    aad: &str,
    msg: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let nonce = random::<NONCE_BYTES>()?;
    let payload = chacha20poly1305::aead::Payload {
        msg,
        aad: aad.as_bytes(),
    };
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| StoreError::Task("encryption failed".into()))?,
    );
    Ok(out)
}

/// Decrypts what [`seal`] wrote for the same `aad`.
pub(crate) fn open(
    cipher: &ChaCha20Poly1305,
    aad: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, StoreError> {
    if sealed.len() < NONCE_BYTES {
        return Err(StoreError::Corrupt(format!("secret of {aad} is truncated")));
    }
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    let nonce = Nonce::try_from(nonce)
        .map_err(|_| StoreError::Corrupt(format!("secret of {aad} has a bad nonce")))?;
    let payload = chacha20poly1305::aead::Payload {
        msg: ct,
        aad: aad.as_bytes(),
    };
    cipher.decrypt(&nonce, payload).map_err(|_| {
        StoreError::Corrupt(format!(
            "secret of {aad} cannot be decrypted (was master.key replaced?)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_key_is_created_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        // What a crash during an earlier first start can leave: a temporary
        // file, never a short master.key. The next start creates the key.
        std::fs::write(dir.path().join(".master.key-abc123"), b"short").unwrap();
        let key = load_or_create_master_key(&path).unwrap();
        assert_eq!(load_or_create_master_key(&path).unwrap(), key);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A short key (not written by nimbus) is reported, never replaced.
        std::fs::write(&path, b"short").unwrap();
        let err = load_or_create_master_key(&path).unwrap_err().to_string();
        assert!(err.contains("holds 5 bytes"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }
}

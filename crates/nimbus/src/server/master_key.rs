//! Which master key seals this server's secrets, and where it comes from.
//!
//! One node keeps its key beside its database (`master.key` in the data
//! directory, created on first use). A cluster cannot: the key must never be
//! stored in the database it protects, and every node must hold the same
//! one, so with `--postgres` the operator provides it (`--master-key-file`
//! or `NIMBUS_MASTER_KEY`) and the server refuses to invent one.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;

/// The environment variable holding a key in base64.
pub const MASTER_KEY_ENV: &str = "NIMBUS_MASTER_KEY";

const HOW_TO_MAKE_ONE: &str = "make one with `head -c 32 /dev/urandom | base64 > master.key` \
     (keep it outside the database, give every node the same file) and pass \
     --master-key-file master.key, or set NIMBUS_MASTER_KEY to its contents";

/// Resolves the key: `--master-key-file`, else `NIMBUS_MASTER_KEY`, else
/// (one node only) the data directory's `master.key`.
pub fn resolve(
    file: Option<&Path>,
    env_value: Option<String>,
    clustered: bool,
    data_dir: &Path,
) -> anyhow::Result<[u8; 32]> {
    if let Some(path) = file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?;
        return parse(&bytes).with_context(|| format!("in {}", path.display()));
    }
    if let Some(value) = env_value {
        return parse(value.as_bytes()).context(MASTER_KEY_ENV);
    }
    if clustered {
        bail!(
            "--postgres needs a master key shared by every node and kept out of the database: {HOW_TO_MAKE_ONE}"
        );
    }
    Ok(nimbus_store::load_or_create_master_key(
        &data_dir.join("master.key"),
    )?)
}

/// A key is 32 raw bytes (the embedded `master.key`) or their base64.
fn parse(bytes: &[u8]) -> anyhow::Result<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Ok(raw);
    }
    let text = std::str::from_utf8(bytes).map(str::trim).map_err(|_| {
        anyhow::anyhow!("a master key is 32 bytes or their base64; {HOW_TO_MAKE_ONE}")
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| anyhow::anyhow!("the master key is not base64; {HOW_TO_MAKE_ONE}"))?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "the master key decodes to {} bytes, not 32; {HOW_TO_MAKE_ONE}",
            decoded.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_base64_keys_are_read_and_others_refused() {
        let key = [5u8; 32];
        assert_eq!(parse(&key).unwrap(), key);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse(format!("{b64}\n").as_bytes()).unwrap(), key);
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(
            parse(short.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("16 bytes")
        );
        assert!(
            parse(b"not base64 !!")
                .unwrap_err()
                .to_string()
                .contains("not base64")
        );
    }

    #[test]
    fn a_cluster_without_a_key_is_refused_with_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(None, None, true, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
        assert!(!dir.path().join("master.key").exists());
        // One node makes its own.
        let made = resolve(None, None, false, dir.path()).unwrap();
        assert_eq!(resolve(None, None, false, dir.path()).unwrap(), made);
    }
}

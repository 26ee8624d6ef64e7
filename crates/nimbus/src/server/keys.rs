//! The first admin key: created on first start, or taken from the environment
//! (`NIMBUS_ADMIN_ACCESS_KEY_ID` / `NIMBUS_ADMIN_SECRET_ACCESS_KEY`) for
//! automated setups. A created key is shown once: on the terminal when stdout
//! is one, else in a 0600 file in the data directory, because a service's
//! stdout usually ends in a journal or log file that others can read.

use anyhow::Context;
use nimbus_store::{KeyStore, NewAccessKey};

/// Imports the key from the environment, or creates one when none exists.
/// Returns a newly created key so that its secret can be shown once.
pub async fn ensure_admin_key(keys: &dyn KeyStore) -> anyhow::Result<Option<NewAccessKey>> {
    let id = std::env::var("NIMBUS_ADMIN_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("NIMBUS_ADMIN_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => {
            keys.import(&id, &secret, "admin (from the environment)")
                .await
                .context("invalid NIMBUS_ADMIN_ACCESS_KEY_ID / NIMBUS_ADMIN_SECRET_ACCESS_KEY")?;
            Ok(None)
        }
        (None, None) => {
            if keys.list().await?.is_empty() {
                Ok(Some(keys.create("admin (created on first start)").await?))
            } else {
                Ok(None)
            }
        }
        _ => anyhow::bail!(
            "set both NIMBUS_ADMIN_ACCESS_KEY_ID and NIMBUS_ADMIN_SECRET_ACCESS_KEY, or neither"
        ),
    }
}

/// Name of the file, in the data directory, that receives a created admin key
/// when stdout is not a terminal.
pub const ADMIN_KEY_FILE: &str = "admin-key.env";

pub fn announce(
    created: Option<&NewAccessKey>,
    data_dir: &std::path::Path,
    dev: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if let Some(k) = created {
        let exports = format!(
            "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\n",
            k.key.access_key_id, k.secret_access_key
        );
        if std::io::stdout().is_terminal() {
            println!("admin access key (shown once; keep it, `nimbus keys create` makes more).");
            println!("The CLI and the AWS SDKs read these two variables:");
            for line in exports.lines() {
                println!("  {line}");
            }
        } else {
            let path = data_dir.join(ADMIN_KEY_FILE);
            write_private(&path, &exports)
                .with_context(|| format!("cannot write the admin key to {}", path.display()))?;
            println!(
                "admin access key written to {} (mode 0600; `. {}` sets AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY; delete the file once the key is kept elsewhere)",
                path.display(),
                path.display()
            );
        }
    }
    if dev {
        tracing::warn!(
            "--dev: AWS API requests are NOT authenticated; anyone who can reach the listener can deploy and run code"
        );
        println!("WARNING: --dev mode, AWS API requests are not authenticated");
    }
    Ok(())
}

/// Writes `text` to a new file only its owner can read (an existing one is
/// replaced, never followed if it is a link).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

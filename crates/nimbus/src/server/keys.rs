//! The first admin key: created on first start and printed once, or taken from
//! the environment (`NIMBUS_ADMIN_ACCESS_KEY_ID` / `NIMBUS_ADMIN_SECRET_ACCESS_KEY`)
//! for automated setups. Its secret is never written anywhere in clear.

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

pub fn announce(created: Option<&NewAccessKey>, dev: bool) {
    if let Some(k) = created {
        println!("admin access key (shown once; keep it, `nimbus keys create` makes more).");
        println!("The CLI and the AWS SDKs read these two variables:");
        println!("  export AWS_ACCESS_KEY_ID={}", k.key.access_key_id);
        println!("  export AWS_SECRET_ACCESS_KEY={}", k.secret_access_key);
    }
    if dev {
        tracing::warn!(
            "--dev: AWS API requests are NOT authenticated; anyone who can reach the listener can deploy and run code"
        );
        println!("WARNING: --dev mode, AWS API requests are not authenticated");
    }
}

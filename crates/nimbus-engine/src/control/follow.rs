//! The registry follows functions changed by other nodes.
//!
//! A notice names a function; everything the registry keeps of it (the
//! running `$LATEST`, its published versions, its aliases, the warm targets
//! of provisioned concurrency) is re-read and brought in line through the
//! same steps a local change takes: new code or configuration activates a
//! new pool (warm instances of the old code serve nothing more), a
//! metadata-only change keeps the pool, a function gone is unloaded (its
//! instances stop, its credentials are forgotten). A revision already
//! running is left alone, so a node's own notices change nothing.

use std::collections::HashSet;
use std::sync::Arc;

use nimbus_core::{FunctionName, FunctionRecord};
use nimbus_store::{Change, ChangeKind};

use super::ControlPlane;
use super::versions::parse_version;
use crate::EngineError;
use crate::follow::{FollowError, Follower};

impl ControlPlane {
    /// Brings this node's view of one function in line with the store.
    pub(crate) async fn follow_function(&self, name: &FunctionName) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        match self.metadata.get_function(name).await? {
            Some(stored) => self.follow_stored(stored).await,
            None => {
                self.unload(name);
                Ok(())
            }
        }
    }

    /// Brings the whole registry in line with the store; how many functions
    /// are stored. A function that cannot be loaded is logged and skipped
    /// (it stays as it was); a store error is returned once every other
    /// function was tried.
    pub(crate) async fn follow_all(&self) -> Result<usize, EngineError> {
        let _w = self.writes.lock().await;
        let stored = self.metadata.list_functions().await?;
        let n = stored.len();
        let mut gone: HashSet<FunctionName> = self.registry.names().into_iter().collect();
        let mut store_error = None;
        for record in stored {
            let name = record.config.name.clone();
            gone.remove(&name);
            if let Err(e) = self.follow_stored(record).await {
                tracing::error!(function = %name, "cannot load function: {e}");
                if let EngineError::Store(e) = e {
                    store_error.get_or_insert(e);
                }
            }
        }
        for name in gone {
            self.unload(&name);
        }
        match store_error {
            Some(e) => Err(e.into()),
            None => Ok(n),
        }
    }

    async fn follow_stored(&self, stored: FunctionRecord) -> Result<(), EngineError> {
        let name = stored.config.name.clone();
        self.follow_latest(stored.clone()).await?;
        self.follow_versions(&name).await?;
        self.follow_aliases(&name).await?;
        self.apply_provisioned(&name, &stored).await;
        Ok(())
    }

    async fn follow_latest(&self, stored: FunctionRecord) -> Result<(), EngineError> {
        match self.registry.get(&stored.config.name) {
            Some(running) if running.record.revision_id == stored.revision_id => {}
            Some(running) if runs_the_same(&running.record, &stored) => {
                let (limit, reserved) = self.scheduler.limit_for(stored.reserved_concurrency);
                running.pool.set_limit(limit, reserved);
                self.keep_running(stored);
            }
            _ => {
                self.activate(stored).await?;
            }
        }
        Ok(())
    }

    /// Versions are immutable: a new one is built, a deleted one retired, and
    /// one whose revision changed (the function was deleted and created
    /// again) replaced.
    async fn follow_versions(&self, name: &FunctionName) -> Result<(), EngineError> {
        let mut gone: HashSet<u32> = self.registry.version_numbers(name).into_iter().collect();
        for version in self.metadata.list_versions(name).await? {
            let Some(n) = parse_version(&version.version) else {
                continue;
            };
            gone.remove(&n);
            let current = self.registry.get_version(name, n);
            if current.is_some_and(|d| d.record.revision_id == version.revision_id) {
                continue;
            }
            let deployed = self.build(version).await?;
            if let Some(old) = self.registry.put_version(n, deployed) {
                old.pool.retire();
            }
        }
        for n in gone {
            if let Some(old) = self.registry.remove_version(name, n) {
                old.pool.retire();
            }
        }
        Ok(())
    }

    async fn follow_aliases(&self, name: &FunctionName) -> Result<(), EngineError> {
        let mut gone: HashSet<String> = self.registry.alias_names(name).into_iter().collect();
        for alias in self.metadata.list_aliases(name).await? {
            gone.remove(&alias.name);
            self.registry.put_alias(alias);
        }
        for alias in gone {
            self.registry.remove_alias(name, &alias);
        }
        Ok(())
    }
}

/// Whether instances of `stored` would be those of `running`: same code,
/// configuration and generation (the credentials derive from it).
fn runs_the_same(running: &FunctionRecord, stored: &FunctionRecord) -> bool {
    running.code_sha256 == stored.code_sha256
        && running.config == stored.config
        && running.resolved_style == stored.resolved_style
        && running.created_at == stored.created_at
}

#[async_trait::async_trait]
impl Follower for ControlPlane {
    fn name(&self) -> &'static str {
        "functions"
    }

    fn follows(&self, kind: ChangeKind) -> bool {
        kind == ChangeKind::Function
    }

    async fn changed(self: Arc<Self>, change: &Change) -> Result<(), FollowError> {
        // A key that is no function's name names nothing this node runs.
        if let Ok(name) = change.key.parse::<FunctionName>() {
            self.follow_function(&name).await?;
        }
        Ok(())
    }

    async fn resync(self: Arc<Self>) -> Result<(), FollowError> {
        self.follow_all().await?;
        Ok(())
    }
}

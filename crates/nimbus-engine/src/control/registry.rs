//! The in-memory view of what is deployed. Reads are lock-light clones of `Arc`s;
//! the control plane is the only writer.
//!
//! In a cluster the view follows other nodes' writes through the change feed
//! (`control/follow.rs`), a few milliseconds after they commit. A client that
//! writes through one node and at once reads through another must still see
//! its write, so a registry made with [`Registry::following`] checks the store
//! before the two answers that could be stale in a way a client would notice:
//! a miss (a function another node just created) and a function principal's
//! grants (`catch_up_revision`). Hits cost nothing; a miss costs one read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use nimbus_runtime::InstanceSpec;
use nimbus_store::MetadataStore;
use tokio::sync::Notify;

use crate::scheduler::Pool;

/// One deployed function version, ready to run.
pub struct Deployed {
    pub record: FunctionRecord,
    pub spec: Arc<InstanceSpec>,
    pub arn: String,
    pub pool: Arc<Pool>,
}

#[derive(Default)]
pub struct Registry {
    /// `$LATEST` of every function.
    functions: RwLock<HashMap<FunctionName, Arc<Deployed>>>,
    /// Published versions.
    versions: RwLock<HashMap<(FunctionName, u32), Arc<Deployed>>>,
    aliases: RwLock<HashMap<(FunctionName, String), Arc<AliasRecord>>>,
    /// In a cluster, the store other nodes write to (see the module doc).
    following: Option<Arc<dyn MetadataStore>>,
    /// Woken at every change of the view.
    changed: Notify,
}

/// How long a request waits for this node to apply a write the store
/// already has (the change feed delivers it within milliseconds; this bounds
/// a node whose feed is reconnecting).
const CATCH_UP: Duration = Duration::from_secs(2);

impl Registry {
    /// The registry of a node of a cluster: other nodes write to `store`.
    pub fn following(store: Arc<dyn MetadataStore>) -> Self {
        Self {
            following: Some(store),
            ..Self::default()
        }
    }

    /// Before answering that `name` (with `qualifier`) does not exist: in a
    /// cluster, when the store has it, waits (up to a bound) until this
    /// node's view does. Returns at once on a hit or on a single node.
    pub async fn catch_up(&self, name: &FunctionName, qualifier: Option<&str>) {
        let Some(store) = &self.following else {
            return;
        };
        if self.resolve(name, qualifier, 0.0).is_some() {
            return;
        }
        let stored = match qualifier {
            None | Some("$LATEST") => store.get_function(name).await.ok().flatten().is_some(),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => match q.parse() {
                Ok(v) => store.get_version(name, v).await.ok().flatten().is_some(),
                Err(_) => false,
            },
            Some(alias) => store.get_alias(name, alias).await.ok().flatten().is_some(),
        };
        if stored {
            self.wait_until(|| self.resolve(name, qualifier, 0.0).is_some())
                .await;
        }
    }

    /// Before deciding what a function may do: in a cluster, when the store
    /// holds another revision of it than this node runs (a grant just changed
    /// through another node) or none (it was deleted), waits (up to a bound)
    /// until this node's view agrees.
    pub async fn catch_up_revision(&self, name: &str) {
        let Some(store) = &self.following else {
            return;
        };
        let Ok(name) = name.parse::<FunctionName>() else {
            return;
        };
        let Ok(stored) = store.get_function(&name).await else {
            return;
        };
        let stored = stored.map(|r| r.revision_id);
        self.wait_until(|| self.get(&name).map(|d| d.record.revision_id.clone()) == stored)
            .await;
    }

    async fn wait_until(&self, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    pub fn get(&self, name: &FunctionName) -> Option<Arc<Deployed>> {
        self.functions.read().unwrap().get(name).cloned()
    }

    /// Whether the function named `function` (as it is deployed now) may
    /// perform `action` on `resource` (an ARN), by its `permissions`
    /// ([`nimbus_core::policy`]). A function that does not exist may nothing.
    /// The APIs ask this for every request signed with function credentials,
    /// and delivery paths ask it for the function that set them up, so a
    /// revoked grant stops both at once.
    pub fn function_allows(&self, function: &str, action: &str, resource: &str) -> bool {
        function
            .parse::<FunctionName>()
            .ok()
            .and_then(|n| self.get(&n))
            .is_some_and(|d| {
                nimbus_core::policy::allows(&d.record.config.permissions, action, resource)
            })
    }

    pub(crate) fn put(&self, deployed: Arc<Deployed>) -> Option<Arc<Deployed>> {
        let old = self
            .functions
            .write()
            .unwrap()
            .insert(deployed.record.config.name.clone(), deployed);
        self.changed.notify_waiters();
        old
    }

    /// Removes a function with all its versions and aliases; returns every
    /// deployed version so their pools can be retired.
    pub(crate) fn remove(&self, name: &FunctionName) -> Vec<Arc<Deployed>> {
        let mut gone: Vec<Arc<Deployed>> = self
            .functions
            .write()
            .unwrap()
            .remove(name)
            .into_iter()
            .collect();
        self.versions.write().unwrap().retain(|(n, _), d| {
            if n == name {
                gone.push(d.clone());
                false
            } else {
                true
            }
        });
        self.aliases.write().unwrap().retain(|(n, _), _| n != name);
        self.changed.notify_waiters();
        gone
    }

    pub fn get_version(&self, name: &FunctionName, version: u32) -> Option<Arc<Deployed>> {
        self.versions
            .read()
            .unwrap()
            .get(&(name.clone(), version))
            .cloned()
    }

    /// Registers a published version; returns the one it replaces.
    pub(crate) fn put_version(
        &self,
        version: u32,
        deployed: Arc<Deployed>,
    ) -> Option<Arc<Deployed>> {
        let key = (deployed.record.config.name.clone(), version);
        let old = self.versions.write().unwrap().insert(key, deployed);
        self.changed.notify_waiters();
        old
    }

    /// The functions deployed on this node.
    pub(crate) fn names(&self) -> Vec<FunctionName> {
        self.functions.read().unwrap().keys().cloned().collect()
    }

    /// The published versions of `name` deployed on this node.
    pub(crate) fn version_numbers(&self, name: &FunctionName) -> Vec<u32> {
        let versions = self.versions.read().unwrap();
        versions
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    }

    /// The aliases of `name` this node knows.
    pub(crate) fn alias_names(&self, name: &FunctionName) -> Vec<String> {
        let aliases = self.aliases.read().unwrap();
        aliases
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .collect()
    }

    pub(crate) fn remove_version(
        &self,
        name: &FunctionName,
        version: u32,
    ) -> Option<Arc<Deployed>> {
        self.versions
            .write()
            .unwrap()
            .remove(&(name.clone(), version))
    }

    pub fn get_alias(&self, name: &FunctionName, alias: &str) -> Option<Arc<AliasRecord>> {
        self.aliases
            .read()
            .unwrap()
            .get(&(name.clone(), alias.to_string()))
            .cloned()
    }

    pub(crate) fn put_alias(&self, alias: AliasRecord) {
        let key = (alias.function.clone(), alias.name.clone());
        self.aliases.write().unwrap().insert(key, Arc::new(alias));
        self.changed.notify_waiters();
    }

    pub(crate) fn remove_alias(&self, name: &FunctionName, alias: &str) {
        self.aliases
            .write()
            .unwrap()
            .remove(&(name.clone(), alias.to_string()));
    }

    /// Resolves a qualifier (`$LATEST`, a version number or an alias) to what
    /// runs. For a weighted alias, `draw` (uniform in [0, 1)) picks the version.
    pub fn resolve(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
        draw: f64,
    ) -> Option<Arc<Deployed>> {
        match qualifier {
            None | Some("$LATEST") => self.get(name),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
                self.get_version(name, q.parse().ok()?)
            }
            Some(alias) => {
                let a = self.get_alias(name, alias)?;
                let version = match &a.routing {
                    Some(r) if draw < r.weight => &r.version,
                    _ => &a.function_version,
                };
                self.resolve(name, Some(version.as_str()), draw)
            }
        }
    }
}

//! The in-memory view of what is deployed. Reads are lock-light clones of `Arc`s;
//! the control plane is the only writer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use nimbus_runtime::InstanceSpec;

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
}

impl Registry {
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
        self.functions
            .write()
            .unwrap()
            .insert(deployed.record.config.name.clone(), deployed)
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
        self.versions.write().unwrap().insert(key, deployed)
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

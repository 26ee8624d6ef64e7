//! Versions and aliases.
//!
//! A version is an immutable snapshot of `$LATEST`'s code and configuration,
//! numbered from 1 and never renumbered; an alias names a version and may send a
//! share of its traffic to a second one (canary releases). Both live in the
//! metadata store and in the registry, where the invoker resolves qualifiers.

use nimbus_core::{
    AliasRecord, AliasRouting, FunctionName, FunctionRecord, ValidationError, validate_alias_name,
};
use nimbus_store::StoreError;

use crate::EngineError;
use crate::control::{ControlPlane, now, revision};

/// A change to an alias; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct AliasUpdate {
    pub function_version: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` removes the routing.
    pub routing: Option<Option<AliasRouting>>,
    pub expected_revision: Option<String>,
}

/// A version number in its canonical form only ("1", not "01"), so that string
/// comparisons between aliases and versions stay exact.
pub(super) fn parse_version(v: &str) -> Option<u32> {
    v.parse()
        .ok()
        .filter(|n: &u32| *n > 0 && n.to_string() == v)
}

impl ControlPlane {
    /// Publishes `$LATEST` as a new version, unless nothing changed since the last one.
    pub async fn publish_version(
        &self,
        name: &FunctionName,
        code_sha256: Option<String>,
        description: Option<String>,
        expected_revision: Option<String>,
    ) -> Result<FunctionRecord, EngineError> {
        let _w = self.writes.lock().await;
        let mut latest = self.get(name).await?;
        if let Some(expected) = expected_revision
            && expected != latest.revision_id
        {
            return Err(EngineError::PreconditionFailed(latest.revision_id));
        }
        if let Some(sha) = code_sha256
            && sha != latest.code_sha256
        {
            return Err(ValidationError::param(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                latest.code_sha256
            ))
            .into());
        }
        if latest.last_version > 0
            && let Some(prev) = self.metadata.get_version(name, latest.last_version).await?
            && prev.code_sha256 == latest.code_sha256
            && prev.config == latest.config
        {
            return Ok(prev);
        }
        let number = latest.last_version + 1;
        let mut snapshot = latest.clone();
        snapshot.version = number.to_string();
        snapshot.revision_id = revision();
        snapshot.last_modified = now();
        if let Some(d) = description {
            snapshot.config.description = d;
        }
        self.metadata.insert_version(&snapshot).await?;
        latest.last_version = number;
        self.metadata.update_function(&latest).await?;
        self.keep_running(latest);
        let deployed = self.build(snapshot.clone()).await?;
        self.registry.put_version(number, deployed);
        Ok(snapshot)
    }

    pub async fn list_versions(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<FunctionRecord>, EngineError> {
        self.get(name).await?;
        Ok(self.metadata.list_versions(name).await?)
    }

    /// A version's record; `$LATEST` is the function itself.
    pub async fn get_qualified(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<FunctionRecord, EngineError> {
        if qualifier == "$LATEST" {
            return self.get(name).await;
        }
        let version = match parse_version(qualifier) {
            Some(v) => v,
            None => {
                let alias = self.get_alias(name, qualifier).await?;
                return Box::pin(self.get_qualified(name, &alias.function_version)).await;
            }
        };
        self.metadata
            .get_version(name, version)
            .await?
            .ok_or_else(|| EngineError::FunctionNotFound(format!("{name}:{qualifier}")))
    }

    /// Deletes one version; refused while an alias points to it.
    pub async fn delete_version(
        &self,
        name: &FunctionName,
        version: &str,
    ) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        let n = parse_version(version)
            .ok_or_else(|| EngineError::FunctionNotFound(format!("{name}:{version}")))?;
        for a in self.metadata.list_aliases(name).await? {
            let routed = a.routing.as_ref().is_some_and(|r| r.version == version);
            if a.function_version == version || routed {
                return Err(EngineError::Conflict(format!(
                    "Unable to delete version because the following aliases reference it: [{}]",
                    a.name
                )));
            }
        }
        if !self.metadata.delete_version(name, n).await? {
            return Err(EngineError::FunctionNotFound(format!("{name}:{version}")));
        }
        if let Some(d) = self.registry.remove_version(name, n) {
            d.pool.retire();
        }
        Ok(())
    }

    async fn version_exists(&self, name: &FunctionName, v: &str) -> Result<bool, EngineError> {
        Ok(match v {
            "$LATEST" => true,
            v => match parse_version(v) {
                Some(n) => self.metadata.get_version(name, n).await?.is_some(),
                None => false,
            },
        })
    }

    async fn check_alias_target(
        &self,
        name: &FunctionName,
        a: &AliasRecord,
    ) -> Result<(), EngineError> {
        if !self.version_exists(name, &a.function_version).await? {
            return Err(EngineError::FunctionNotFound(format!(
                "{name}:{}",
                a.function_version
            )));
        }
        if let Some(r) = &a.routing {
            if !(0.0..=1.0).contains(&r.weight) {
                return Err(
                    ValidationError::param("routing weights must be between 0.0 and 1.0").into(),
                );
            }
            if r.version == a.function_version {
                return Err(ValidationError::param(format!(
                    "Invalid function version {0}. Function version {0} is already included in routing configuration.",
                    r.version
                ))
                .into());
            }
            if r.version == "$LATEST" || a.function_version == "$LATEST" {
                return Err(ValidationError::param(
                    "$LATEST is not supported for an alias pointing to more than 1 version",
                )
                .into());
            }
            if !self.version_exists(name, &r.version).await? {
                return Err(EngineError::FunctionNotFound(format!(
                    "{name}:{}",
                    r.version
                )));
            }
        }
        Ok(())
    }

    pub async fn create_alias(
        &self,
        name: &FunctionName,
        alias: &str,
        function_version: String,
        description: String,
        routing: Option<AliasRouting>,
    ) -> Result<AliasRecord, EngineError> {
        validate_alias_name(alias)?;
        let _w = self.writes.lock().await;
        self.get(name).await?;
        let record = AliasRecord {
            function: name.clone(),
            name: alias.to_string(),
            function_version,
            description,
            routing,
            revision_id: revision(),
        };
        self.check_alias_target(name, &record).await?;
        match self.metadata.put_alias(&record, true).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(format!(
                    "Alias already exists: {alias}"
                )));
            }
            other => other?,
        }
        self.registry.put_alias(record.clone());
        Ok(record)
    }

    pub async fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<AliasRecord, EngineError> {
        self.metadata
            .get_alias(name, alias)
            .await?
            .ok_or_else(|| EngineError::AliasNotFound(format!("{name}:{alias}")))
    }

    pub async fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasRecord>, EngineError> {
        self.get(name).await?;
        Ok(self.metadata.list_aliases(name).await?)
    }

    pub async fn update_alias(
        &self,
        name: &FunctionName,
        alias: &str,
        update: AliasUpdate,
    ) -> Result<AliasRecord, EngineError> {
        let _w = self.writes.lock().await;
        let mut record = self.get_alias(name, alias).await?;
        if let Some(expected) = update.expected_revision
            && expected != record.revision_id
        {
            return Err(EngineError::PreconditionFailed(record.revision_id));
        }
        if let Some(v) = update.function_version {
            record.function_version = v;
        }
        if let Some(d) = update.description {
            record.description = d;
        }
        if let Some(r) = update.routing {
            record.routing = r;
        }
        record.revision_id = revision();
        self.check_alias_target(name, &record).await?;
        self.metadata.put_alias(&record, false).await?;
        self.registry.put_alias(record.clone());
        drop(_w);
        // Provisioned instances follow the alias to its new version.
        let latest = self.get(name).await?;
        self.apply_provisioned(name, &latest).await;
        Ok(record)
    }

    pub async fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        if !self.metadata.delete_alias(name, alias).await? {
            return Err(EngineError::AliasNotFound(format!("{name}:{alias}")));
        }
        self.registry.remove_alias(name, alias);
        drop(_w);
        // Its provisioned concurrency goes with it.
        let key = alias.to_string();
        let record = self
            .modify(name, None, false, move |r| {
                r.provisioned.remove(&key);
            })
            .await?;
        self.apply_provisioned(name, &record).await;
        Ok(())
    }

    /// The version a provisioned-concurrency qualifier designates.
    async fn provisioned_version(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<u32, EngineError> {
        if qualifier == "$LATEST" {
            return Err(ValidationError::param(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
            )
            .into());
        }
        let version = match parse_version(qualifier) {
            Some(v) => v.to_string(),
            None => self.get_alias(name, qualifier).await?.function_version,
        };
        let n = parse_version(&version).ok_or_else(|| {
            EngineError::Invalid(ValidationError::param(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
            ))
        })?;
        if self.metadata.get_version(name, n).await?.is_none() {
            return Err(EngineError::FunctionNotFound(format!("{name}:{qualifier}")));
        }
        Ok(n)
    }

    /// Sets (or with `None` removes) provisioned concurrency for a version or alias:
    /// that many instances are kept initialised, so its invocations never cold-start.
    pub async fn set_provisioned(
        &self,
        name: &FunctionName,
        qualifier: &str,
        requested: Option<u32>,
    ) -> Result<FunctionRecord, EngineError> {
        let version = self.provisioned_version(name, qualifier).await?;
        let latest = self.get(name).await?;
        if let Some(n) = requested {
            if n == 0 {
                return Err(ValidationError::param(
                    "ProvisionedConcurrentExecutions must be at least 1",
                )
                .into());
            }
            if let Some(reserved) = latest.reserved_concurrency
                && n > reserved
            {
                return Err(ValidationError::param(format!(
                    "Requested Provisioned Concurrency ({n}) should not be greater than the reservedConcurrentExecution ({reserved}) for function"
                ))
                .into());
            }
            let account = self.config.account_concurrency as u64;
            if n as u64 + 100 > account {
                return Err(ValidationError::param(format!(
                    "Requested Provisioned Concurrency ({n}) leaves less than 100 of the account's {account} unreserved"
                ))
                .into());
            }
        } else if !latest.provisioned.contains_key(qualifier) {
            return Err(EngineError::ProvisionedNotFound(format!(
                "{name}:{qualifier}"
            )));
        }
        let key = qualifier.to_string();
        let record = self
            .modify(name, None, false, move |r| match requested {
                Some(n) => {
                    r.provisioned.insert(key, n);
                }
                None => {
                    r.provisioned.remove(&key);
                }
            })
            .await?;
        self.apply_provisioned(name, &record).await;
        let _ = version;
        Ok(record)
    }

    /// (requested, available) provisioned instances for a qualifier.
    pub async fn provisioned_status(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<(u32, u32), EngineError> {
        let latest = self.get(name).await?;
        let requested = *latest
            .provisioned
            .get(qualifier)
            .ok_or_else(|| EngineError::ProvisionedNotFound(format!("{name}:{qualifier}")))?;
        let version = self.provisioned_version(name, qualifier).await?;
        let available = self
            .registry
            .get_version(name, version)
            .map(|d| d.pool.provisioned().1)
            .unwrap_or(0);
        Ok((requested, (available as u32).min(requested)))
    }

    /// Sets each version pool's warm target from the stored configs (summing the
    /// configs of qualifiers that designate the same version).
    pub(crate) async fn apply_provisioned(&self, name: &FunctionName, record: &FunctionRecord) {
        let mut targets: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
        for (qualifier, n) in &record.provisioned {
            if let Ok(v) = self.provisioned_version(name, qualifier).await {
                *targets.entry(v).or_default() += *n as usize;
            }
        }
        for v in self.metadata.list_versions(name).await.unwrap_or_default() {
            if let (Some(n), Some(d)) = (
                parse_version(&v.version),
                parse_version(&v.version).and_then(|n| self.registry.get_version(name, n)),
            ) {
                d.pool
                    .set_warm_target(targets.get(&n).copied().unwrap_or(0));
            }
        }
    }
}

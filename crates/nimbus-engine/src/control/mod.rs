//! The control plane: every change to what is deployed goes through here.
//!
//! The native API, the CLI's manifests and (later) the AWS-compatible API all turn
//! their requests into these commands, so validation and side effects are the same
//! whichever door a change came in by. Writes are serialised by one lock: they are
//! rare, and it makes "validate, store, swap the running version" atomic.

mod follow;
pub mod registry;
mod versions;

pub use versions::AliasUpdate;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::{FunctionConfig, FunctionName, FunctionRecord, Runtime, ValidationError};
use nimbus_runtime::InstanceSpec;
use nimbus_store::{
    ByteStream, CodeBlobs, CodeCache, CodeInfo, MetadataStore, Package, StoreError,
};
use serde::Deserialize;

use crate::scheduler::Scheduler;
use crate::{EngineConfig, EngineError};
use registry::{Deployed, Registry};

/// Create (or replace) a function from already-uploaded code.
#[derive(Debug, Clone)]
pub struct CreateFunction {
    pub config: FunctionConfig,
    pub code_sha256: String,
    /// AWS execution role, kept and echoed back (Nimbus scopes credentials itself).
    pub role: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// AWS runtime identifier to echo back (see `FunctionRecord::runtime_id`).
    pub runtime_id: Option<String>,
}

/// A partial configuration update; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub runtime: Option<Runtime>,
    pub handler: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "nimbus_core::permissions::deserialize_optional_list"
    )]
    pub permissions: Option<Vec<nimbus_core::permissions::Permission>>,
    pub role: Option<String>,
    pub ephemeral_storage_mb: Option<u32>,
    pub network: Option<nimbus_core::Network>,
    /// Set by the AWS API alongside `runtime`; not part of the native API.
    #[serde(skip)]
    pub runtime_id: Option<String>,
}

pub struct ControlPlane {
    pub(crate) config: EngineConfig,
    pub(crate) metadata: Arc<dyn MetadataStore>,
    /// The packages (wherever they are kept) and this node's unpacked trees.
    pub(crate) code: CodeCache,
    pub(crate) registry: Arc<Registry>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) writes: tokio::sync::Mutex<()>,
    /// Issues each function's own credentials and says where the AWS APIs are.
    pub(crate) credentials: FunctionAccess,
}

/// How instances reach Nimbus's AWS-compatible APIs with their own credentials.
pub struct FunctionAccess {
    pub keys: Arc<dyn nimbus_store::KeyStore>,
    /// `AWS_ENDPOINT_URL` of every instance (the API listener).
    pub endpoint_url: String,
}

pub(crate) fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

pub(crate) fn revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl ControlPlane {
    pub fn new(
        config: EngineConfig,
        metadata: Arc<dyn MetadataStore>,
        code: Arc<dyn CodeBlobs>,
        registry: Arc<Registry>,
        scheduler: Arc<Scheduler>,
        access: FunctionAccess,
    ) -> Self {
        let code = CodeCache::new(code, config.code_cache_dir.clone());
        Self {
            config,
            metadata,
            code,
            registry,
            scheduler,
            writes: tokio::sync::Mutex::new(()),
            credentials: access,
        }
    }

    /// The live view of what is deployed.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Validates and stores a zip; returns its content address.
    pub async fn upload_code(&self, zip: Bytes) -> Result<CodeInfo, EngineError> {
        let package = blocking(move || Package::check(zip)).await?;
        self.code.blobs().put(&package).await.map_err(code_error)?;
        Ok(package.info().clone())
    }

    /// A stored code package's zip, as a stream.
    pub async fn code_zip(&self, sha256: &str) -> Result<(CodeInfo, ByteStream), EngineError> {
        self.code.blobs().open(sha256).await.map_err(code_error)
    }

    /// Loads every stored function into the registry (server start); how
    /// many are stored.
    pub async fn load_all(&self) -> Result<usize, EngineError> {
        self.follow_all().await
    }

    pub async fn get(&self, name: &FunctionName) -> Result<FunctionRecord, EngineError> {
        self.metadata
            .get_function(name)
            .await?
            .ok_or_else(|| EngineError::FunctionNotFound(name.to_string()))
    }

    pub async fn list(&self) -> Result<Vec<FunctionRecord>, EngineError> {
        Ok(self.metadata.list_functions().await?)
    }

    pub async fn create(&self, req: CreateFunction) -> Result<FunctionRecord, EngineError> {
        let _w = self.writes.lock().await;
        let resolved_style = self.check(&req.config, &req.code_sha256).await?;
        let ts = now();
        let record = FunctionRecord {
            version: "$LATEST".into(),
            resolved_style,
            code_size: self.code_size(&req.code_sha256).await?,
            code_sha256: req.code_sha256,
            revision_id: revision(),
            created_at: ts.clone(),
            last_modified: ts,
            config: req.config,
            role: req.role,
            tags: req.tags,
            runtime_id: req.runtime_id,
            reserved_concurrency: None,
            last_version: 0,
            event_invoke_config: None,
            provisioned: Default::default(),
        };
        match self.metadata.insert_function(&record).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::FunctionExists(record.config.name.to_string()));
            }
            other => other?,
        }
        self.activate(record.clone()).await?;
        Ok(record)
    }

    /// Creates the function, or replaces its code and configuration. Returns
    /// whether it was created.
    pub async fn put(&self, req: CreateFunction) -> Result<(FunctionRecord, bool), EngineError> {
        match self.metadata.get_function(&req.config.name).await? {
            None => match self.create(req.clone()).await {
                Err(EngineError::FunctionExists(_)) => Box::pin(self.put(req)).await,
                other => other.map(|r| (r, true)),
            },
            Some(_) => {
                let name = req.config.name.clone();
                let config = req.config;
                let sha = req.code_sha256;
                let (role, tags, runtime_id) = (req.role, req.tags, req.runtime_id);
                self.modify(&name, None, true, move |r| {
                    r.config = config;
                    r.code_sha256 = sha;
                    r.runtime_id = runtime_id;
                    if role.is_some() {
                        r.role = role;
                    }
                    r.tags.extend(tags);
                })
                .await
                .map(|r| (r, false))
            }
        }
    }

    /// Replaces the code. With `expected_revision`, fails if the function changed since.
    pub async fn update_code(
        &self,
        name: &FunctionName,
        code_sha256: String,
        expected_revision: Option<String>,
    ) -> Result<FunctionRecord, EngineError> {
        self.modify(name, expected_revision, true, move |r| {
            r.code_sha256 = code_sha256
        })
        .await
    }

    /// Sets or clears a function's reserved concurrency. At least 100 of the
    /// account's concurrency must stay unreserved, as on Lambda.
    pub async fn set_reserved_concurrency(
        &self,
        name: &FunctionName,
        reserved: Option<u32>,
    ) -> Result<FunctionRecord, EngineError> {
        if let Some(n) = reserved {
            let others: u64 = self
                .list()
                .await?
                .iter()
                .filter(|r| &r.config.name != name)
                .filter_map(|r| r.reserved_concurrency)
                .map(u64::from)
                .sum();
            let account = self.config.account_concurrency as u64;
            if others + n as u64 + 100 > account {
                return Err(ValidationError::param(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]. (account limit {account}, reserved elsewhere {others})"
                ))
                .into());
            }
        }
        let record = self
            .modify(name, None, false, move |r| {
                r.reserved_concurrency = reserved
            })
            .await?;
        if let Some(d) = self.registry.get(name) {
            let (limit, is_reserved) = self.scheduler.limit_for(reserved);
            d.pool.set_limit(limit, is_reserved);
        }
        Ok(record)
    }

    /// Sets (or with `None` removes) how asynchronous invocations are retried and
    /// where their results go.
    pub async fn set_event_invoke_config(
        &self,
        name: &FunctionName,
        config: Option<nimbus_core::EventInvokeConfig>,
    ) -> Result<FunctionRecord, EngineError> {
        if let Some(c) = &config {
            c.validate()?;
        }
        self.modify(name, None, false, move |r| r.event_invoke_config = config)
            .await
    }

    /// Concurrency not reserved by any function.
    pub async fn unreserved_concurrency(&self) -> Result<u64, EngineError> {
        let reserved: u64 = self
            .list()
            .await?
            .iter()
            .filter_map(|r| r.reserved_concurrency)
            .map(u64::from)
            .sum();
        Ok((self.config.account_concurrency as u64).saturating_sub(reserved))
    }

    /// Adds or replaces tags (running instances are kept).
    pub async fn tag(
        &self,
        name: &FunctionName,
        tags: BTreeMap<String, String>,
    ) -> Result<FunctionRecord, EngineError> {
        self.modify(name, None, false, move |r| r.tags.extend(tags))
            .await
    }

    /// Removes tags (running instances are kept).
    pub async fn untag(
        &self,
        name: &FunctionName,
        keys: Vec<String>,
    ) -> Result<FunctionRecord, EngineError> {
        self.modify(name, None, false, move |r| {
            for k in keys {
                r.tags.remove(&k);
            }
        })
        .await
    }

    /// Applies a configuration patch. With `expected_revision`, fails if the function changed since.
    pub async fn update_config(
        &self,
        name: &FunctionName,
        patch: ConfigPatch,
        expected_revision: Option<String>,
    ) -> Result<FunctionRecord, EngineError> {
        self.modify(name, expected_revision, true, move |r| {
            let c = &mut r.config;
            if let Some(v) = patch.runtime {
                c.runtime = v;
                r.runtime_id = patch.runtime_id;
            }
            if let Some(v) = patch.handler {
                c.handler = v;
            }
            if let Some(v) = patch.memory_mb {
                c.memory_mb = v;
            }
            if let Some(v) = patch.timeout_s {
                c.timeout_s = v;
            }
            if let Some(v) = patch.ephemeral_storage_mb {
                c.ephemeral_storage_mb = v;
            }
            if let Some(v) = patch.network {
                c.network = v;
            }
            if let Some(v) = patch.environment {
                c.environment = v;
            }
            if let Some(v) = patch.description {
                c.description = v;
            }
            if let Some(v) = patch.permissions {
                c.permissions = v;
            }
            if let Some(v) = patch.role {
                r.role = Some(v);
            }
        })
        .await
    }

    pub async fn delete(&self, name: &FunctionName) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        if !self.metadata.delete_function(name).await? {
            return Err(EngineError::FunctionNotFound(name.to_string()));
        }
        self.unload(name);
        Ok(())
    }

    /// Takes a deleted function out of this node: its instances stop, its
    /// limits and its credentials are forgotten.
    fn unload(&self, name: &FunctionName) {
        for old in self.registry.remove(name) {
            old.pool.retire();
        }
        self.scheduler.forget_function(name.as_str());
        self.credentials.keys.forget_function(name.as_str());
    }

    /// Read-modify-write of a record under the write lock. `reactivate` replaces
    /// the running version (new instances); metadata-only changes keep it.
    pub(crate) async fn modify(
        &self,
        name: &FunctionName,
        expected_revision: Option<String>,
        reactivate: bool,
        change: impl FnOnce(&mut FunctionRecord),
    ) -> Result<FunctionRecord, EngineError> {
        let _w = self.writes.lock().await;
        let mut record = self.get(name).await?;
        if let Some(expected) = expected_revision
            && expected != record.revision_id
        {
            return Err(EngineError::PreconditionFailed(record.revision_id));
        }
        change(&mut record);
        record.resolved_style = self.check(&record.config, &record.code_sha256).await?;
        record.code_size = self.code_size(&record.code_sha256).await?;
        record.revision_id = revision();
        record.last_modified = now();
        self.metadata.update_function(&record).await?;
        if reactivate {
            self.activate(record.clone()).await?;
        } else {
            self.keep_running(record.clone());
        }
        Ok(record)
    }

    /// Same code and configuration: keeps the running pool (and its warm
    /// instances) and refreshes the record it serves.
    pub(crate) fn keep_running(&self, record: FunctionRecord) {
        if let Some(d) = self.registry.get(&record.config.name) {
            self.registry.put(Arc::new(Deployed {
                record,
                spec: d.spec.clone(),
                arn: d.arn.clone(),
                pool: d.pool.clone(),
            }));
        }
    }

    async fn code_size(&self, sha: &str) -> Result<u64, EngineError> {
        // The blob exists (checked in `check`); its size is the zip's size.
        match self.code.blobs().info(sha).await {
            Ok(Some(info)) => Ok(info.size),
            _ => Err(EngineError::CodeNotFound(format!("code package {sha}"))),
        }
    }

    /// Validates configuration against the code it will run; returns the handler
    /// style instances will use (requested, or detected from the package).
    async fn check(
        &self,
        config: &FunctionConfig,
        sha: &str,
    ) -> Result<nimbus_core::HandlerStyle, EngineError> {
        config.validate()?;
        if self.code.blobs().info(sha).await?.is_none() {
            return Err(EngineError::CodeNotFound(format!("code package {sha}")));
        }
        // Unpack now, before anything is recorded: a package that cannot be
        // unpacked (disk full, …) fails the deploy instead of leaving a stored
        // function that cannot run.
        let (dir, listing) = self.code.unpack(sha).await.map_err(code_error)?;
        let (runtime, handler, requested) =
            (config.runtime, config.handler.clone(), config.handler_style);
        let style = blocking(move || {
            // Detection reads a few manifests (package.json, requirements.txt, …).
            let read = |p: &str| -> Option<String> {
                let f = listing.files.get(p)?;
                if f.size > 1 << 20 {
                    return None;
                }
                std::fs::read_to_string(dir.join(p)).ok()
            };
            Ok(nimbus_core::style::resolve(
                &listing, runtime, &handler, requested, &read,
            ))
        })
        .await??;
        Ok(style)
    }

    /// Makes a stored record the running `$LATEST`: unpack code, new pool, swap.
    async fn activate(&self, record: FunctionRecord) -> Result<Arc<Deployed>, EngineError> {
        let deployed = self.build(record).await?;
        if let Some(old) = self.registry.put(deployed.clone()) {
            old.pool.retire();
        }
        Ok(deployed)
    }

    /// Prepares a record to run (code unpacked, pool created) without registering it.
    pub(crate) async fn build(&self, record: FunctionRecord) -> Result<Arc<Deployed>, EngineError> {
        let code_dir = self
            .code
            .unpacked(&record.code_sha256)
            .await
            .map_err(code_error)?;
        let c = &record.config;
        let spec = Arc::new(InstanceSpec {
            function: c.name.to_string(),
            version: record.version.clone(),
            runtime: c.runtime,
            handler: c.handler.clone(),
            handler_style: record.resolved_style,
            memory_mb: c.memory_mb,
            ephemeral_storage_mb: c.ephemeral_storage_mb,
            network: c.network,
            timeout: std::time::Duration::from_secs(c.timeout_s as u64),
            code_dir,
            environment: self.instance_environment(&record),
            region: self.config.region.clone(),
            initialization_type: "on-demand",
        });
        Ok(Arc::new(Deployed {
            arn: self.config.function_arn(c.name.as_str()),
            pool: self
                .scheduler
                .new_pool(spec.clone(), record.reserved_concurrency),
            spec,
            record,
        }))
    }
}

impl ControlPlane {
    /// The function's environment plus its own credentials and the endpoint of
    /// the AWS APIs, so that SDKs inside the function reach Nimbus unchanged.
    fn instance_environment(&self, record: &FunctionRecord) -> BTreeMap<String, String> {
        let mut env = record.config.environment.clone();
        let access = &self.credentials;
        let creds = access
            .keys
            .function_credentials(record.config.name.as_str(), &record.created_at);
        env.insert("AWS_ACCESS_KEY_ID".into(), creds.access_key_id);
        env.insert("AWS_SECRET_ACCESS_KEY".into(), creds.secret_access_key);
        env.entry("AWS_ENDPOINT_URL".into())
            .or_insert_with(|| access.endpoint_url.clone());
        env
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Store(StoreError::Task(e.to_string())))?
        .map_err(code_error)
}

/// A code store's error: a missing package is the caller's `CodeNotFound`.
fn code_error(e: StoreError) -> EngineError {
    match e {
        StoreError::NotFound(what) => EngineError::CodeNotFound(what),
        other => other.into(),
    }
}

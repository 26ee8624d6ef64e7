//! The in-memory view of what is deployed. Reads are lock-light clones of `Arc`s;
//! the control plane is the only writer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use nimbus_core::{FunctionName, FunctionRecord};
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
    functions: RwLock<HashMap<FunctionName, Arc<Deployed>>>,
}

impl Registry {
    pub fn get(&self, name: &FunctionName) -> Option<Arc<Deployed>> {
        self.functions.read().unwrap().get(name).cloned()
    }

    pub(crate) fn put(&self, deployed: Arc<Deployed>) -> Option<Arc<Deployed>> {
        self.functions
            .write()
            .unwrap()
            .insert(deployed.record.config.name.clone(), deployed)
    }

    pub(crate) fn remove(&self, name: &FunctionName) -> Option<Arc<Deployed>> {
        self.functions.write().unwrap().remove(name)
    }
}

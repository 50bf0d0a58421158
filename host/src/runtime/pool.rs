//! Warm instances of a service component (one that exports project
//! interfaces to other components). A call takes an idle instance, or makes
//! one from the pre-instantiated template when none is idle, and gives it
//! back afterwards, so a component's per-instance caches (compiled schemas,
//! open buckets) serve many calls.

use super::state::{HostState, StateFactory};
use anyhow::Result;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::Store;

/// Idle instances kept per component; more are made under load and dropped
/// when they come back to a full pool.
const MAX_IDLE: usize = 16;

pub struct Warm {
    pub store: Store<HostState>,
    pub instance: Instance,
}

pub struct ServicePool {
    name: Arc<str>,
    pre: InstancePre<HostState>,
    factory: Arc<StateFactory>,
    idle: Mutex<Vec<Warm>>,
}

impl ServicePool {
    pub fn new(name: Arc<str>, pre: InstancePre<HostState>, factory: Arc<StateFactory>) -> ServicePool {
        ServicePool { name, pre, factory, idle: Mutex::new(Vec::new()) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        // A panic while holding this lock leaves only a Vec behind: still valid.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle instance, or a new one.
    pub async fn take(&self) -> Result<Warm> {
        if let Some(warm) = self.lock().pop() {
            return Ok(warm);
        }
        let mut store = Store::new(self.pre.engine(), self.factory.new_state(&self.name));
        let instance = self.pre.instantiate_async(&mut store).await?;
        Ok(Warm { store, instance })
    }

    /// Return an instance after a successful call. Instances that trapped are
    /// never given back: their state is suspect.
    pub fn give_back(&self, warm: Warm) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(warm);
        }
    }

    /// Make `n` instances ahead of the first call.
    pub async fn prewarm(&self, n: usize) -> Result<()> {
        let mut made = Vec::with_capacity(n);
        for _ in 0..n {
            made.push(self.take().await?);
        }
        for warm in made {
            self.give_back(warm);
        }
        Ok(())
    }
}

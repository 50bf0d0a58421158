//! Warm instances of a service component (one that exports project
//! interfaces to other components). A call takes an idle instance, or makes
//! one from the pre-instantiated template when none is idle, and gives it
//! back afterwards, so a component's per-instance caches (compiled schemas,
//! open buckets) serve many calls.

use super::state::{HostState, StateFactory};
use anyhow::Result;
use std::sync::{Arc, Mutex};
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, Val};
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        // A panic while holding this lock leaves only a Vec behind: still valid.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle instance, or a new one.
    /// Its deadline starts now: the call made with it must end within
    /// `call_deadline_ticks`, or it traps (`Trap::Interrupt`).
    pub async fn take(&self) -> Result<Warm> {
        let idle = self.lock().pop();
        let mut warm = match idle {
            Some(warm) => warm,
            None => {
                let mut store = Store::new(self.pre.engine(), self.factory.new_state(&self.name));
                HostState::watch_memory(&mut store);
                store.set_epoch_deadline(self.factory.call_deadline_ticks);
                let instance = self.pre.instantiate_async(&mut store).await?;
                Warm { store, instance }
            }
        };
        warm.store.set_epoch_deadline(self.factory.call_deadline_ticks);
        Ok(warm)
    }

    /// Call the export `index` on a warm instance. A trap drops the instance
    /// and surfaces as a trap of the caller.
    pub async fn call(&self, index: &ComponentExportIndex, params: &[Val], results: &mut [Val]) -> Result<()> {
        let mut warm = self.take().await?;
        let func = warm
            .instance
            .get_func(&mut warm.store, index)
            .ok_or_else(|| anyhow::anyhow!("{}: export is not a function", self.name))?;
        func.call_async(&mut warm.store, params, results).await?;
        func.post_return_async(&mut warm.store).await?;
        self.give_back(warm);
        Ok(())
    }

    /// Return an instance after a successful call. Instances that trapped are
    /// never given back: their state is suspect.
    pub fn give_back(&self, warm: Warm) {
        // A grown instance is dropped: its memory goes back to the system.
        if !warm.store.data().fit_for_pool() {
            tracing::debug!(component = %self.name, bytes = warm.store.data().largest_memory(), "instance grew too large to keep warm; dropped");
            return;
        }
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

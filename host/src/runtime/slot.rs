//! Swappable link targets. Every project interface a component exports is
//! served through a slot; a forwarder reads the slot on each call, so
//! replacing a component (a new routing policy, say) is one pointer swap per
//! interface: calls already running finish on the old instances, every call
//! that starts afterwards goes to the new ones, and none is lost or made
//! twice.

use super::linking::Loaded;
use super::pool::ServicePool;
use anyhow::{Context, Result};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentExportIndex, Val};
use wasmtime::Engine;

/// A component serving its exports: its warm pool and the index of every
/// exported function, keyed `interface#function`.
pub struct Target {
    pub name: Arc<str>,
    pub exports: Vec<String>,
    pool: Arc<ServicePool>,
    /// Looked up on every call between components: hashed with Fx, not
    /// SipHash (the keys are our own interface names, not attacker input).
    funcs: FxHashMap<String, ComponentExportIndex>,
}

impl Target {
    pub fn new(engine: &Engine, loaded: &Loaded, pool: Arc<ServicePool>) -> Result<Target> {
        let mut funcs = FxHashMap::default();
        let ty = loaded.component.component_type();
        for (export, item) in ty.exports(engine) {
            if !loaded.exports.iter().any(|e| e == export) {
                continue;
            }
            let ComponentItem::ComponentInstance(instance) = item else { continue };
            let iface = loaded
                .component
                .get_export_index(None, export)
                .with_context(|| format!("{} does not export {export}", loaded.name))?;
            for (func, item) in instance.exports(engine) {
                if matches!(item, ComponentItem::ComponentFunc(_)) {
                    let index = loaded
                        .component
                        .get_export_index(Some(&iface), func)
                        .with_context(|| format!("{} does not export {export}#{func}", loaded.name))?;
                    funcs.insert(format!("{export}#{func}"), index);
                }
            }
        }
        Ok(Target { name: loaded.name.clone(), exports: loaded.exports.clone(), pool, funcs })
    }

    /// Call `key` (`interface#function`) on a warm instance.
    pub async fn call(&self, key: &str, params: &[Val], results: &mut [Val]) -> Result<()> {
        let index = self.funcs.get(key).with_context(|| format!("{} has no function {key}", self.name))?;
        self.pool.call(index, params, results).await
    }
}

/// Where calls to one interface go.
pub struct Slot {
    current: RwLock<Arc<Target>>,
}

impl Slot {
    pub fn new(target: Arc<Target>) -> Slot {
        Slot { current: RwLock::new(target) }
    }

    pub fn current(&self) -> Arc<Target> {
        // A poisoned lock still holds a valid Arc.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Point the slot at `target`; returns the previous one.
    pub fn replace(&self, target: Arc<Target>) -> Arc<Target> {
        std::mem::replace(&mut *self.current.write().unwrap_or_else(|p| p.into_inner()), target)
    }
}

/// Project interface → its slot.
pub type Slots = HashMap<String, Arc<Slot>>;

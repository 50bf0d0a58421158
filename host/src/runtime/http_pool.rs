//! Warm instances of an HTTP entry component, entered either by the typed
//! `twinlattice:http-face/handler` call or by `wasi:http/incoming-handler`.
//! Neither leaves request state in the instance once `handle` returns (the
//! typed call takes and returns plain values; the wasi:http request and
//! response are resources the guest dropped), so an instance that returned
//! normally serves the next request; one that trapped is dropped. This
//! saves an instantiation and the store setup per request.

use super::state::{HostState, StateFactory};
use crate::bindings::http_entry::{HttpEntry, HttpEntryPre};
use anyhow::Result;
use std::sync::{Arc, Mutex};
use wasmtime::component::InstancePre;
use wasmtime::Store;
use wasmtime_wasi_http::bindings::{Proxy, ProxyPre};

/// Idle HTTP instances kept; more are made under load.
const MAX_IDLE: usize = 64;

/// How the host enters HTTP components (`--http-entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EntryKind {
    /// `twinlattice:http-face/handler` where the component exports it (one
    /// call per request, bodies read whole), else `wasi:http`.
    Typed,
    /// Always `wasi:http/incoming-handler`, as on a lattice.
    WasiHttp,
}

enum EntryPre {
    Typed(HttpEntryPre<HostState>),
    WasiHttp(ProxyPre<HostState>),
}

/// The entry's exports on one instance.
pub enum Entry {
    Typed(HttpEntry),
    WasiHttp(Proxy),
}

pub struct HttpInstance {
    pub store: Store<HostState>,
    pub entry: Entry,
}

pub struct HttpPool {
    name: Arc<str>,
    pre: EntryPre,
    factory: Arc<StateFactory>,
    idle: Mutex<Vec<HttpInstance>>,
}

impl HttpPool {
    /// The pool of an HTTP entry component, or `None` when `pre` exports
    /// neither entry (as `kind` allows).
    pub fn new(name: Arc<str>, pre: InstancePre<HostState>, kind: EntryKind, factory: Arc<StateFactory>) -> Option<HttpPool> {
        let typed = match kind {
            EntryKind::Typed => HttpEntryPre::new(pre.clone()).ok().map(EntryPre::Typed),
            EntryKind::WasiHttp => None,
        };
        let pre = typed.or_else(|| ProxyPre::new(pre).ok().map(EntryPre::WasiHttp))?;
        Some(HttpPool { name, pre, factory, idle: Mutex::new(Vec::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HttpInstance>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle instance or a new one; the request's deadline starts now.
    pub async fn take(&self) -> Result<HttpInstance> {
        let idle = self.lock().pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => {
                let mut store = Store::new(self.engine(), self.factory.new_state(&self.name));
                HostState::watch_memory(&mut store);
                store.set_epoch_deadline(self.factory.call_deadline_ticks);
                let entry = match &self.pre {
                    EntryPre::Typed(pre) => Entry::Typed(pre.instantiate_async(&mut store).await?),
                    EntryPre::WasiHttp(pre) => Entry::WasiHttp(pre.instantiate_async(&mut store).await?),
                };
                HttpInstance { store, entry }
            }
        };
        instance.store.set_epoch_deadline(self.factory.call_deadline_ticks);
        Ok(instance)
    }

    /// The component's name (which face's error body a failure gets).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn engine(&self) -> &wasmtime::Engine {
        match &self.pre {
            EntryPre::Typed(pre) => pre.engine(),
            EntryPre::WasiHttp(pre) => pre.engine(),
        }
    }

    pub fn give_back(&self, instance: HttpInstance) {
        // A grown instance is dropped: its memory goes back to the system.
        if !instance.store.data().fit_for_pool() {
            tracing::debug!(component = %self.name, bytes = instance.store.data().largest_memory(), "instance grew too large to keep warm; dropped");
            return;
        }
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(instance);
        }
    }
}

//! Warm instances of the HTTP entry component. A `wasi:http/incoming-handler`
//! instance holds no request state once `handle` returns (the request and
//! response are resources it dropped), so an instance that returned normally
//! serves the next request; one that trapped is dropped. This saves an
//! instantiation and the store setup per request.

use super::state::{HostState, StateFactory};
use anyhow::Result;
use std::sync::{Arc, Mutex};
use wasmtime::Store;
use wasmtime_wasi_http::bindings::{Proxy, ProxyPre};

/// Idle HTTP instances kept; more are made under load.
const MAX_IDLE: usize = 64;

pub struct HttpInstance {
    pub store: Store<HostState>,
    pub proxy: Proxy,
}

pub struct HttpPool {
    name: Arc<str>,
    pre: ProxyPre<HostState>,
    factory: Arc<StateFactory>,
    idle: Mutex<Vec<HttpInstance>>,
}

impl HttpPool {
    pub fn new(name: Arc<str>, pre: ProxyPre<HostState>, factory: Arc<StateFactory>) -> HttpPool {
        HttpPool { name, pre, factory, idle: Mutex::new(Vec::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HttpInstance>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn take(&self) -> Result<HttpInstance> {
        if let Some(instance) = self.lock().pop() {
            return Ok(instance);
        }
        let mut store = Store::new(self.pre.engine(), self.factory.new_state(&self.name));
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(HttpInstance { store, proxy })
    }

    pub fn give_back(&self, instance: HttpInstance) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(instance);
        }
    }
}

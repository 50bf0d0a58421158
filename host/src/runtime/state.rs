//! The data every component store carries, and the factory that makes it.

use crate::capabilities::bus::BusView;
use crate::capabilities::keyvalue::{KeyValueCtx, KeyValueView};
use crate::capabilities::kv_store::KvStore;
use crate::capabilities::locks::{LockTable, LocksView};
use crate::capabilities::logging::LoggingView;
use crate::capabilities::outbound::{OutboundCtx, OutboundView};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// Per-store state: one per component instance.
pub struct HostState {
    component: Arc<str>,
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: KeyValueCtx,
    config: Arc<WasiConfigVariables>,
    outbound: Arc<OutboundCtx>,
    locks: Arc<LockTable>,
    memory: MemoryWatch,
}

/// The largest linear memory an instance has grown to, seen through the
/// store's resource limiter (which allows every growth up to the engine's
/// maximum): a pool drops an instance that grew past `POOLED_MEMORY_BYTES`
/// instead of keeping it warm, so one large answer does not leave its
/// memory resident in an idle instance for ever (security review H8).
#[derive(Default)]
pub struct MemoryWatch {
    largest: usize,
}

/// The most linear memory an idle pooled instance may hold. The validator
/// grows to about 36 MiB on every registration (its compiled schemas):
/// below that, every registration would pay for a new validator instance.
pub const POOLED_MEMORY_BYTES: usize = 64 << 20;

impl wasmtime::ResourceLimiter for MemoryWatch {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.largest = self.largest.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl HostState {
    /// Whether this instance is small enough to keep warm in a pool.
    pub fn fit_for_pool(&self) -> bool {
        self.memory.largest <= POOLED_MEMORY_BYTES
    }

    /// The largest linear memory this instance has grown to, in bytes.
    pub fn largest_memory(&self) -> usize {
        self.memory.largest
    }

    /// Install the memory watch on `store` (once, when it is made).
    pub fn watch_memory(store: &mut wasmtime::Store<HostState>) {
        store.limiter(|state| &mut state.memory);
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl HostState {
    /// The store's resources (for host functions defined outside the
    /// capability views).
    pub fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

pub fn keyvalue_view(s: &mut HostState) -> KeyValueView<'_> {
    KeyValueView::new(&s.kv, &mut s.table)
}

pub fn logging_view(s: &mut HostState) -> LoggingView<'_> {
    LoggingView { component: &s.component }
}

pub fn config_view(s: &mut HostState) -> WasiConfig<'_> {
    WasiConfig::from(&*s.config)
}

pub fn outbound_view(s: &mut HostState) -> OutboundView<'_> {
    OutboundView { ctx: &s.outbound }
}

pub fn bus_view(s: &mut HostState) -> BusView<'_> {
    BusView { table: &mut s.table }
}

pub fn locks_view(s: &mut HostState) -> LocksView<'_> {
    LocksView { table: &s.locks }
}

/// Makes fresh store data; shared by every pool and the HTTP server.
pub struct StateFactory {
    pub kv: Arc<KvStore>,
    pub config: Arc<WasiConfigVariables>,
    pub outbound: Arc<OutboundCtx>,
    pub locks: Arc<LockTable>,
    /// Each call's deadline, in epoch ticks (`engine::deadline_ticks`).
    pub call_deadline_ticks: u64,
}

impl StateFactory {
    pub fn new_state(&self, component: &Arc<str>) -> HostState {
        // Components get no files, no environment and no arguments: what they
        // may touch comes through their imports. stderr is inherited so a
        // guest panic message reaches the host's log.
        let wasi = WasiCtx::builder().inherit_stderr().build();
        HostState {
            component: component.clone(),
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            kv: KeyValueCtx { store: self.kv.clone() },
            config: self.config.clone(),
            outbound: self.outbound.clone(),
            locks: self.locks.clone(),
            memory: MemoryWatch::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn an_instance_grown_past_the_bound_is_not_kept_warm() {
        let mut watch = MemoryWatch::default();
        assert!(watch.memory_growing(0, 1 << 20, None).unwrap_or(false), "growth is never refused");
        assert!(watch.largest <= POOLED_MEMORY_BYTES);
        assert!(watch.memory_growing(1 << 20, POOLED_MEMORY_BYTES + (64 << 10), None).unwrap_or(false));
        assert!(watch.largest > POOLED_MEMORY_BYTES);
        // Shrinking back is not a thing for linear memory; a later smaller
        // growth request does not lower the high-water mark.
        assert!(watch.memory_growing(0, 1 << 20, None).unwrap_or(false));
        assert!(watch.largest > POOLED_MEMORY_BYTES);
    }
}

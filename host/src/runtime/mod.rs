//! The embedded host: loads every component in the components directory,
//! links their project imports to each other's exports, gives them the WASI
//! capabilities natively, and hands out instances.

pub mod engine;
pub mod http_pool;
pub mod linking;
pub mod pool;
pub mod state;

use crate::capabilities::{keyvalue, kv_store::KvStore, logging, outbound};
use anyhow::{bail, Context, Result};
use linking::Loaded;
use pool::ServicePool;
use state::{HostState, StateFactory};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, Linker, Val};
use wasmtime::Engine;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::bindings::ProxyPre;

/// Where the host finds its parts and keeps its data.
/// Compile every component in `components_dir` into `cache_dir` ahead of
/// the first start; returns the component names.
pub fn precompile(components_dir: &Path, cache_dir: &Path) -> Result<Vec<String>> {
    let engine = engine::new_engine()?;
    let mut names = Vec::new();
    for file in component_files(components_dir)? {
        engine::load_component(&engine, &file, cache_dir)?;
        names.push(file.display().to_string());
    }
    Ok(names)
}

pub struct RuntimeOptions {
    pub components_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Compiled-code cache (safe to delete).
    pub cache_dir: PathBuf,
    /// Flush every committed write to disk before acknowledging it.
    pub fsync: bool,
    /// What the host's delivery side of the bridges needs.
    pub outbound: Arc<outbound::OutboundCtx>,
    /// `wasi:config` values every component sees.
    pub config: Vec<(String, String)>,
}

/// Requests and messages handled at once, across the HTTP server and the
/// bridges. Each holds an instance of every component on its call path
/// (up to five), so this keeps the pooling allocator's 1,000 instance slots
/// from running out under load; excess work waits its turn instead of
/// failing.
const MAX_IN_FLIGHT: usize = 128;

pub struct Runtime {
    admission: Arc<tokio::sync::Semaphore>,
    /// Project interface → pool of the component exporting it.
    pools: HashMap<String, (Arc<ServicePool>, Component)>,
    http: Option<http_pool::HttpPool>,
    components: Vec<String>,
}

/// The capabilities the host itself gives every component.
fn base_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    keyvalue::add_to_linker(&mut linker, state::keyvalue_view)?;
    logging::add_to_linker(&mut linker, state::logging_view)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, state::config_view)?;
    outbound::add_to_linker(&mut linker, state::outbound_view)?;
    Ok(linker)
}

fn component_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to read the components directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .wasm components in {} (run scripts/build-components.sh)", dir.display());
    }
    Ok(files)
}

impl Runtime {
    pub async fn start(options: &RuntimeOptions) -> Result<Runtime> {
        let engine = engine::new_engine()?;
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("failed to create the data directory {}", options.data_dir.display()))?;
        let kv = Arc::new(KvStore::open(&options.data_dir.join("twinlattice.redb"), options.fsync)?);
        let factory = Arc::new(StateFactory {
            kv,
            config: Arc::new(WasiConfigVariables::from_iter(options.config.iter().cloned())),
            outbound: options.outbound.clone(),
        });
        let cache_dir = &options.cache_dir;
        let mut loaded = Vec::new();
        for file in component_files(&options.components_dir)? {
            let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("component").to_string();
            let component = engine::load_component(&engine, &file, cache_dir)?;
            loaded.push(Loaded::new(&engine, &name, component));
        }
        let ordered = linking::dependency_order(loaded)?;
        let mut pools: HashMap<String, (Arc<ServicePool>, Component)> = HashMap::new();
        let mut http = None;
        let mut components = Vec::new();
        for l in &ordered {
            let mut linker = base_linker(&engine)?;
            linking::link_imports(&mut linker, l, &pools)?;
            let pre = linker
                .instantiate_pre(&l.component)
                .with_context(|| format!("failed to link component {}", l.name))?;
            if !l.exports.is_empty() {
                let pool = Arc::new(ServicePool::new(l.name.clone(), pre.clone(), factory.clone()));
                pool.prewarm(1).await.with_context(|| format!("failed to instantiate {}", l.name))?;
                for export in &l.exports {
                    if let Some((other, _)) = pools.insert(export.clone(), (pool.clone(), l.component.clone())) {
                        bail!("{export} is exported by both {} and {}", other.name(), l.name);
                    }
                }
            }
            if let Ok(proxy) = ProxyPre::new(pre) {
                if http.is_some() {
                    bail!("two components export wasi:http/incoming-handler; {} is the second", l.name);
                }
                http = Some(http_pool::HttpPool::new(l.name.clone(), proxy, factory.clone()));
            }
            tracing::info!(component = %l.name, imports = ?l.imports.keys().collect::<Vec<_>>(), exports = ?l.exports, "component linked");
            components.push(l.name.to_string());
        }
        Ok(Runtime { admission: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)), pools, http, components })
    }

    /// Wait for a slot to handle one request or message; the slot is freed
    /// when the permit is dropped.
    pub async fn admit(&self) -> tokio::sync::OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.admission.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the admission semaphore is never closed"),
        }
    }

    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// Warm instances of the HTTP entry component, if one was loaded.
    pub fn http_entry(&self) -> Option<&http_pool::HttpPool> {
        self.http.as_ref()
    }

    /// Call `interface#func` on a warm instance of the component exporting
    /// it, with dynamic values (for the CLI and tests).
    pub async fn call(&self, interface: &str, func: &str, params: &[Val], results: &mut [Val]) -> Result<()> {
        let (pool, component) = self.pools.get(interface).with_context(|| format!("no component exports {interface}"))?;
        let iface = component.get_export_index(None, interface).context("export vanished")?;
        let index = component
            .get_export_index(Some(&iface), func)
            .with_context(|| format!("{interface} has no function {func}"))?;
        let mut warm = pool.take().await?;
        let f = warm.instance.get_func(&mut warm.store, index).context("not a function")?;
        f.call_async(&mut warm.store, params, results).await?;
        f.post_return_async(&mut warm.store).await?;
        pool.give_back(warm);
        Ok(())
    }
}

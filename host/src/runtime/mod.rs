//! The embedded host: loads every component in the components directory,
//! links their project imports to each other's exports, gives them the WASI
//! capabilities natively, and hands out instances.

pub mod admission;
pub mod engine;
pub mod http_pool;
pub mod linking;
pub mod pool;
pub mod slot;
pub mod state;

use crate::capabilities::{keyvalue, kv_store::KvStore, logging, outbound};
use anyhow::{bail, Context, Result};
use linking::Loaded;
use pool::ServicePool;
use slot::{Slot, Slots, Target};
use state::{HostState, StateFactory};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, Linker, Val};
use wasmtime::Engine;
use wasmtime_wasi_config::WasiConfigVariables;

/// Where the host finds its parts and keeps its data.
/// Compile every component in `components_dir` into `cache_dir` ahead of
/// the first start; returns the component names.
pub fn precompile(components_dir: &Path, cache_dir: &Path) -> Result<Vec<String>> {
    let engine = engine::new_engine()?;
    let mut names = Vec::new();
    let mut files = component_files(components_dir)?;
    if let Ok(policies) = component_files(&components_dir.join("policies")) {
        files.extend(policies);
    }
    for file in files {
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
    /// Which HTTP entry component serves which first path segment (see
    /// `HttpRoutes::new`).
    pub http_routes: String,
    /// How HTTP entry components are entered.
    pub http_entry: http_pool::EntryKind,
    /// Components to load besides those in `components_dir` (the routing
    /// policy chosen from `components_dir/policies/`).
    pub extra_components: Vec<PathBuf>,
    /// `wasi:config` values every component sees.
    pub config: Vec<(String, String)>,
    /// How long one call into a component may take, host calls included,
    /// before it traps (`--call-deadline-ms`).
    pub call_deadline: std::time::Duration,
}

/// Requests and messages handled at once, across the HTTP server and the
/// bridges. Each holds an instance of every component on its call path
/// (up to five), so this keeps the pooling allocator's 1,500 instance slots
/// from running out under load; excess work waits its turn instead of
/// failing.
const MAX_IN_FLIGHT: usize = 128;
/// Calls that stepped out of their slot to wait on the network or a timer
/// (`admission::away`). Each keeps the instances of its call path (two or
/// three), so with `MAX_IN_FLIGHT` this stays within the instance slots
/// (`engine::MAX_COMPONENT_INSTANCES`).
const MAX_WAITING: usize = 256;

pub struct Runtime {
    admission: admission::Admission,
    engine: Engine,
    factory: Arc<StateFactory>,
    /// Project interface → the component serving it now.
    slots: Slots,
    /// Which HTTP entry component serves which path.
    http_routes: HttpRoutes,
    components: std::sync::Mutex<Vec<String>>,
    /// Serialises swaps, so two at once cannot interleave their checks.
    swapping: tokio::sync::Mutex<()>,
}

/// What `Runtime::swap` did.
#[derive(Debug, serde::Serialize)]
pub struct SwapReport {
    pub component: String,
    pub replaced: String,
    pub exports: Vec<String>,
    /// Compiling, linking and warming the new component (before the switch).
    pub prepare_ms: f64,
    /// The switch itself: the slots pointed at the new component.
    pub switch_us: f64,
}

/// The capabilities the host itself gives every component.
fn base_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    admission::wait_outside_the_slot(&mut linker)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    keyvalue::add_to_linker(&mut linker, state::keyvalue_view)?;
    logging::add_to_linker(&mut linker, state::logging_view)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, state::config_view)?;
    outbound::add_to_linker(&mut linker, state::outbound_view)?;
    crate::capabilities::locks::add_to_linker(&mut linker, state::locks_view)?;
    crate::capabilities::bus::add_to_linker(&mut linker, state::bus_view)?;
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

/// Which HTTP entry component serves which path: by the path's first
/// segment, else the default one. (On a lattice, the http-server provider's
/// path routing does the same.) Looked up on every request, so it holds the
/// pools themselves and scans a short list instead of hashing.
pub struct HttpRoutes<P = Arc<http_pool::HttpPool>> {
    by_segment: Vec<(String, P)>,
    default: Option<P>,
}

impl<P: Clone> HttpRoutes<P> {
    /// `spec`: `component:segment,segment;component:…`; one HTTP component
    /// not named in it is the default. Routes to components that are not
    /// loaded are dropped.
    fn new(spec: &str, http: &HashMap<String, P>) -> Result<HttpRoutes<P>> {
        let mut by_segment: Vec<(String, String)> = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (component, segments) = part.split_once(':').with_context(|| format!("bad HTTP route {part:?} (want component:segment,…)"))?;
            if !http.contains_key(component) {
                continue;
            }
            for segment in segments.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                by_segment.retain(|(s, _)| s != segment);
                by_segment.push((segment.to_string(), component.to_string()));
            }
        }
        let mut unrouted = http.keys().filter(|c| !by_segment.iter().any(|(_, v)| v == *c));
        let default = match (unrouted.next(), unrouted.next()) {
            (Some(d), None) => Some(d.clone()),
            (None, _) => by_segment.first().map(|(_, c)| c.clone()),
            (Some(a), Some(b)) => bail!("HTTP components {a} and {b} both lack routes; say which paths each serves"),
        };
        Ok(HttpRoutes {
            by_segment: by_segment.into_iter().map(|(segment, c)| (segment, http[&c].clone())).collect(),
            default: default.map(|c| http[&c].clone()),
        })
    }

    fn pool_for(&self, path: &str) -> Option<&P> {
        let first = path.trim_start_matches('/').split(['/', '?']).next().unwrap_or("");
        self.by_segment.iter().find(|(s, _)| s == first).map(|(_, pool)| pool).or(self.default.as_ref())
    }
}

impl Runtime {
    pub async fn start(options: &RuntimeOptions) -> Result<Runtime> {
        let engine = engine::new_engine()?;
        engine::start_epoch_ticker(&engine);
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("failed to create the data directory {}", options.data_dir.display()))?;
        let kv = Arc::new(KvStore::open(&options.data_dir.join("twinlattice.redb"), options.fsync)?);
        let factory = Arc::new(StateFactory {
            kv,
            config: Arc::new(WasiConfigVariables::from_iter(options.config.iter().cloned())),
            outbound: options.outbound.clone(),
            locks: Default::default(),
            call_deadline_ticks: engine::deadline_ticks(options.call_deadline),
        });
        let cache_dir = &options.cache_dir;
        let mut loaded = Vec::new();
        let mut files = component_files(&options.components_dir)?;
        files.extend(options.extra_components.iter().cloned());
        for file in files {
            let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("component").to_string();
            let component = engine::load_component(&engine, &file, cache_dir)?;
            loaded.push(Loaded::new(&engine, &name, component));
        }
        let ordered = linking::dependency_order(loaded)?;
        let mut slots: Slots = HashMap::new();
        let mut http = HashMap::new();
        let mut components = Vec::new();
        for l in &ordered {
            let mut linker = base_linker(&engine)?;
            linking::link_imports(&mut linker, l, &slots)?;
            let pre = linker
                .instantiate_pre(&l.component)
                .with_context(|| format!("failed to link component {}", l.name))?;
            if !l.exports.is_empty() {
                let pool = Arc::new(ServicePool::new(l.name.clone(), pre.clone(), factory.clone()));
                pool.prewarm(1).await.with_context(|| format!("failed to instantiate {}", l.name))?;
                let target = Arc::new(Target::new(&engine, l, pool)?);
                for export in &l.exports {
                    if let Some(other) = slots.insert(export.clone(), Arc::new(Slot::new(target.clone()))) {
                        bail!("{export} is exported by both {} and {}", other.current().name, l.name);
                    }
                }
            }
            if let Some(entry) = http_pool::HttpPool::new(l.name.clone(), pre, options.http_entry, factory.clone()) {
                http.insert(l.name.to_string(), Arc::new(entry));
            }
            tracing::info!(component = %l.name, imports = ?l.imports.keys().collect::<Vec<_>>(), exports = ?l.exports, "component linked");
            components.push(l.name.to_string());
        }
        Ok(Runtime {
            admission: admission::Admission::new(MAX_IN_FLIGHT, MAX_WAITING),
            engine,
            factory,
            slots,
            http_routes: HttpRoutes::new(&options.http_routes, &http)?,
            components: std::sync::Mutex::new(components),
            swapping: tokio::sync::Mutex::new(()),
        })
    }

    /// Wait for a slot to handle one request or message; the slot is freed
    /// when the permit is dropped.
    pub async fn admit(&self) -> admission::Permit {
        self.admission.admit().await
    }

    /// Wait for a slot whose work may step out of it while it waits on the
    /// network or a timer (`admission::away`).
    pub async fn enter(&self) -> admission::Ticket {
        self.admission.enter().await
    }

    /// Whether some loaded component exports `interface`.
    pub fn serves(&self, interface: &str) -> bool {
        self.slots.contains_key(interface)
    }

    /// Names of the loaded components, in link order.
    pub fn components(&self) -> Vec<String> {
        self.components.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replace the running component that exports the same project
    /// interfaces as `wasm` with it, without a restart. The new component is
    /// compiled, linked to the current targets of its imports and
    /// instantiated first; only then are the slots switched, so a component
    /// that fails to load changes nothing, and no call is lost or repeated.
    /// With `required_export`, the new component must export that interface
    /// (`policy set` insists on `twinlattice:routing/policy`).
    pub async fn swap(&self, name: &str, wasm: &[u8], required_export: Option<&str>) -> Result<SwapReport> {
        let _one_at_a_time = self.swapping.lock().await;
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, wasm).context("the component does not compile")?;
        let loaded = Loaded::new(&self.engine, name, component);
        let Some(first) = loaded.exports.first() else {
            bail!("{name} exports no twinlattice interface, so it can replace nothing");
        };
        if let Some(required) = required_export {
            if !loaded.exports.iter().any(|e| e == required) {
                bail!("{name} exports {:?}, not {required}", loaded.exports);
            }
        }
        let old = self.slots.get(first).with_context(|| format!("no running component exports {first}"))?.current();
        let (mut have, mut want) = (old.exports.clone(), loaded.exports.clone());
        have.sort();
        want.sort();
        if have != want {
            bail!("{name} exports {want:?} but {} exports {have:?}; a replacement must export the same interfaces", old.name);
        }
        let mut linker = base_linker(&self.engine)?;
        linking::link_imports(&mut linker, &loaded, &self.slots)?;
        let pre = linker.instantiate_pre(&loaded.component).with_context(|| format!("failed to link {name}"))?;
        let pool = Arc::new(ServicePool::new(loaded.name.clone(), pre, self.factory.clone()));
        pool.prewarm(1).await.with_context(|| format!("failed to instantiate {name}"))?;
        let target = Arc::new(Target::new(&self.engine, &loaded, pool)?);
        let prepared = started.elapsed();
        let switch = std::time::Instant::now();
        for export in &loaded.exports {
            if let Some(slot) = self.slots.get(export) {
                slot.replace(target.clone());
            }
        }
        let switched = switch.elapsed();
        if let Ok(mut names) = self.components.lock() {
            for n in names.iter_mut().filter(|n| **n == *old.name) {
                *n = name.to_string();
            }
        }
        tracing::info!(component = name, replaced = %old.name, "component swapped");
        Ok(SwapReport {
            component: name.to_string(),
            replaced: old.name.to_string(),
            exports: loaded.exports.clone(),
            prepare_ms: prepared.as_secs_f64() * 1e3,
            switch_us: switched.as_secs_f64() * 1e6,
        })
    }

    /// The HTTP entry component that serves `path`.
    pub fn http_entry(&self, path: &str) -> Option<&Arc<http_pool::HttpPool>> {
        self.http_routes.pool_for(path)
    }

    /// Call `interface#func` on a warm instance of the component exporting
    /// it, with dynamic values (for the CLI and tests).
    pub async fn call(&self, interface: &str, func: &str, params: &[Val], results: &mut [Val]) -> Result<()> {
        let slot = self.slots.get(interface).with_context(|| format!("no component exports {interface}"))?;
        slot.current().call(&format!("{interface}#{func}"), params, results).await
    }
}

/// The routing policy file for `--policy`: a path to a .wasm, or the name of
/// one shipped in `components_dir/policies/` (`preferred`, `failover`).
pub fn policy_file(components_dir: &Path, policy: &str) -> PathBuf {
    if policy.ends_with(".wasm") || policy.contains('/') {
        PathBuf::from(policy)
    } else {
        components_dir.join("policies").join(format!("policy-{policy}.wasm"))
    }
}

#[cfg(test)]
mod tests {
    use super::HttpRoutes;
    use std::collections::HashMap;

    fn components(names: &[&'static str]) -> HashMap<String, &'static str> {
        names.iter().map(|n| (n.to_string(), *n)).collect()
    }

    #[test]
    fn routes_by_first_segment_else_to_the_one_unrouted_component() -> anyhow::Result<()> {
        let http = components(&["gateway", "registry", "twins"]);
        let routes = HttpRoutes::new("twins:twins,whoami; registry:shell-descriptors,api", &http)?;
        assert_eq!(routes.pool_for("/shell-descriptors/abc"), Some(&"registry"));
        assert_eq!(routes.pool_for("/api/v3.0/shell-descriptors"), Some(&"registry"));
        assert_eq!(routes.pool_for("/twins?x=1"), Some(&"twins"));
        assert_eq!(routes.pool_for("/whoami"), Some(&"twins"));
        assert_eq!(routes.pool_for("/i40commu"), Some(&"gateway"));
        assert_eq!(routes.pool_for("/"), Some(&"gateway"));
        // A segment is matched whole, not as a prefix.
        assert_eq!(routes.pool_for("/twinsies"), Some(&"gateway"));
        Ok(())
    }

    #[test]
    fn routes_to_components_not_loaded_are_dropped() -> anyhow::Result<()> {
        // As with `--http-entry wasi-http`, where the registry is no HTTP entry.
        let http = components(&["gateway", "twins"]);
        let routes = HttpRoutes::new("twins:twins;registry:shell-descriptors", &http)?;
        assert_eq!(routes.pool_for("/shell-descriptors/abc"), Some(&"gateway"));
        assert_eq!(routes.pool_for("/twins"), Some(&"twins"));
        Ok(())
    }

    #[test]
    fn a_later_route_for_a_segment_wins_and_bad_specs_are_refused() -> anyhow::Result<()> {
        let http = components(&["gateway", "registry", "twins"]);
        let routes = HttpRoutes::new("twins:twins,description;registry:description", &http)?;
        assert_eq!(routes.pool_for("/description"), Some(&"registry"));
        assert!(HttpRoutes::new("twins:twins", &http).is_err(), "gateway and registry both unrouted");
        assert!(HttpRoutes::new("twins", &http).is_err(), "no component:segments");
        Ok(())
    }
}

//! Links components to each other in-process, the way a wasmCloud link does
//! on a lattice: every project interface (`twinlattice:*`) a component
//! imports is served by whichever loaded component exports it. The host
//! knows no interface by name, so any component can be swapped for another
//! that exports the same interfaces without rebuilding the rest.
//!
//! A call crosses stores: the caller's import is a dynamic host function
//! that takes a warm instance of the target from its pool, calls the export
//! with the same values, and hands the results back. The project's
//! interfaces carry records, variants and lists only (no resources), which
//! is what makes values portable between stores.

use super::slot::Slots;
use super::state::HostState;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

/// Project interfaces the host implements itself (the bridges' side of the
/// broker); on a lattice, providers do.
const HOST_PROVIDED: &[&str] = &["twinlattice:transport/outbound@0.1.0", "twinlattice:coordination/locks@0.1.0"];

/// Project interfaces the host calls itself (the typed HTTP entry), which
/// several components export and none imports.
const HOST_CALLED: &[&str] = &["twinlattice:http-face/handler@0.2.0"];

/// Interfaces linked between components rather than given by the host.
pub fn is_project_interface(name: &str) -> bool {
    name.starts_with("twinlattice:") && !HOST_PROVIDED.contains(&name) && !HOST_CALLED.contains(&name)
}

/// A loaded component and the project interfaces it imports and exports.
pub struct Loaded {
    pub name: Arc<str>,
    pub component: Component,
    /// import name → function names
    pub imports: BTreeMap<String, Vec<String>>,
    /// Imported interfaces that declare only types (nothing to link to).
    pub type_only_imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Loaded {
    pub fn new(engine: &Engine, name: &str, component: Component) -> Loaded {
        let ty = component.component_type();
        let mut imports = BTreeMap::new();
        let mut type_only_imports = Vec::new();
        for (import, item) in ty.imports(engine) {
            if let (true, ComponentItem::ComponentInstance(inst)) = (is_project_interface(import), item) {
                let funcs: Vec<String> = inst
                    .exports(engine)
                    .filter(|(_, f)| matches!(f, ComponentItem::ComponentFunc(_)))
                    .map(|(f, _)| f.to_string())
                    .collect();
                if funcs.is_empty() {
                    type_only_imports.push(import.to_string());
                } else {
                    imports.insert(import.to_string(), funcs);
                }
            }
        }
        let exports = ty.exports(engine).map(|(e, _)| e.to_string()).filter(|e| is_project_interface(e)).collect();
        Loaded { name: name.into(), component, imports, type_only_imports, exports }
    }
}

/// Order `loaded` so that every component comes after those it imports from.
pub fn dependency_order(loaded: Vec<Loaded>) -> Result<Vec<Loaded>> {
    let exporter: HashMap<String, Arc<str>> =
        loaded.iter().flat_map(|l| l.exports.iter().map(move |e| (e.clone(), l.name.clone()))).collect();
    for l in &loaded {
        for import in l.imports.keys() {
            if !exporter.contains_key(import) {
                bail!("component {} imports {import}, which no loaded component exports", l.name);
            }
        }
    }
    let mut remaining = loaded;
    let mut ordered: Vec<Loaded> = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|l| {
            l.imports.keys().all(|i| ordered.iter().any(|o| o.name == exporter[i]))
        });
        match ready {
            Some(at) => ordered.push(remaining.remove(at)),
            None => bail!(
                "components import each other in a cycle: {}",
                remaining.iter().map(|l| &*l.name).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(ordered)
}

/// Define every project import of `importer` in `linker` as a forwarder to
/// the slot of the interface, which names the component serving it now.
pub fn link_imports(linker: &mut Linker<HostState>, importer: &Loaded, slots: &Slots) -> Result<()> {
    for interface in &importer.type_only_imports {
        linker.instance(interface)?;
    }
    for (interface, funcs) in &importer.imports {
        let slot = slots.get(interface).with_context(|| format!("no component exports {interface}"))?;
        let mut instance = linker.instance(interface)?;
        for func in funcs {
            let slot = slot.clone();
            let key: Arc<str> = format!("{interface}#{func}").into();
            instance.func_new_async(func, move |_caller, params, results| {
                let target = slot.current();
                let key = key.clone();
                Box::new(async move { target.call(&key, params, results).await })
            })?;
        }
    }
    Ok(())
}

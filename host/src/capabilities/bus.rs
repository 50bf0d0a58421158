//! `wasmcloud:bus/lattice` for components, as the embedded host has it.
//!
//! On a wasmCloud lattice an import may have several links, told apart by
//! name, and `set-link-name` picks one. Here every import is linked to
//! exactly one component, its `default` link: selecting `default` succeeds,
//! any other name is refused with the reason (the broker turns that into an
//! error message for the sender). The embedded host swaps a routing policy
//! by replacing the component behind the link (`twinlattice policy set`).

use crate::bindings::lattice;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// One interface named in a `set-link-name` call.
pub struct CallTargetInterface {
    namespace: String,
    package: String,
    interface: String,
}

impl CallTargetInterface {
    fn name(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.interface)
    }
}

pub struct BusView<'a> {
    pub table: &'a mut ResourceTable,
}

impl lattice::HostCallTargetInterface for BusView<'_> {
    fn new(&mut self, namespace: String, package: String, interface: String) -> wasmtime::Result<Resource<CallTargetInterface>> {
        Ok(self.table.push(CallTargetInterface { namespace, package, interface })?)
    }

    fn drop(&mut self, rep: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl lattice::Host for BusView<'_> {
    fn set_link_name(&mut self, name: String, interfaces: Vec<Resource<CallTargetInterface>>) -> wasmtime::Result<Result<(), String>> {
        let mut names = Vec::with_capacity(interfaces.len());
        for interface in interfaces {
            names.push(self.table.delete(interface)?.name());
        }
        if name == "default" {
            return Ok(Ok(()));
        }
        tracing::warn!(link = %name, interfaces = ?names, "set-link-name: the embedded host has only default links");
        Ok(Err(format!(
            "the embedded host links {} to one component only (link `default`), so there is no link named {name:?}; \
             swap a routing policy with `twinlattice policy set`",
            names.join(", ")
        )))
    }
}

struct HasBus;

impl HasData for HasBus {
    type Data<'a> = BusView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, f: fn(&mut T) -> BusView<'_>) -> wasmtime::Result<()> {
    lattice::add_to_linker::<_, HasBus>(linker, f)
}

//! The registry component: AAS shell and submodel descriptors (AAS Part 2 API
//! v3.0), stored through `wasi:keyvalue`, validated by the validator component
//! through `twinlattice:validation/validator`.
//!
//! Its interfaces speak no HTTP: ids arrive decoded, outcomes leave as typed
//! WIT values. The HTTP face shared with the gateway
//! (`components/shared/registry_face`) is compiled in as well, so the
//! embedded host can enter the registry's routes here directly
//! (`twinlattice:http-face`) instead of through the gateway and a hop.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "twinlattice:registry-component/registry-component",
        generate_all,
    });
}

mod collection;
mod descriptor;
#[allow(dead_code)] // shared code: the wasi:http entry is the gateway's
#[path = "../../shared/http_io.rs"]
mod http_io;
mod kv;
mod lock;
#[path = "../../shared/registry_face/mod.rs"]
mod registry_face;
mod ric;
mod twin_mirror;

/// The registry the shared routes call: this component's own functions,
/// with the signatures of the imported interfaces the gateway calls.
mod registry_calls {
    pub mod shells {
        use crate::bindings::exports::twinlattice::registry::shells::Guest;
        use crate::bindings::twinlattice::registry::types::{Dialect, Error, Page, PageRequest, PutOutcome, ShellFilter};
        use crate::Component;

        pub fn list(filter: &ShellFilter, page: &PageRequest) -> Result<Page, Error> {
            Component::list(filter.clone(), page.clone())
        }
        pub fn get(id: &str) -> Result<String, Error> {
            <Component as Guest>::get(id.into())
        }
        pub fn resolve(key: &str) -> Result<String, Error> {
            Component::resolve(key.into())
        }
        pub fn create(body: &str, dialect: Dialect) -> Result<String, Error> {
            <Component as Guest>::create(body.into(), dialect)
        }
        pub fn put(id: &str, body: &str, dialect: Dialect) -> Result<PutOutcome, Error> {
            <Component as Guest>::put(id.into(), body.into(), dialect)
        }
        pub fn delete(id: &str) -> Result<(), Error> {
            <Component as Guest>::delete(id.into())
        }
        pub fn list_submodels(shell_id: &str, page: &PageRequest) -> Result<Page, Error> {
            Component::list_submodels(shell_id.into(), page.clone())
        }
        pub fn get_submodel(shell_id: &str, submodel_id: &str) -> Result<String, Error> {
            Component::get_submodel(shell_id.into(), submodel_id.into())
        }
        pub fn create_submodel(shell_id: &str, body: &str, dialect: Dialect) -> Result<String, Error> {
            Component::create_submodel(shell_id.into(), body.into(), dialect)
        }
        pub fn put_submodel(shell_id: &str, submodel_id: &str, body: &str, dialect: Dialect) -> Result<PutOutcome, Error> {
            Component::put_submodel(shell_id.into(), submodel_id.into(), body.into(), dialect)
        }
        pub fn delete_submodel(shell_id: &str, submodel_id: &str) -> Result<(), Error> {
            Component::delete_submodel(shell_id.into(), submodel_id.into())
        }
    }

    pub mod submodels {
        use crate::bindings::exports::twinlattice::registry::submodels::Guest;
        use crate::bindings::twinlattice::registry::types::{Dialect, Error, Page, PageRequest, PutOutcome, SubmodelFilter};
        use crate::Component;

        pub fn list(filter: &SubmodelFilter, page: &PageRequest) -> Result<Page, Error> {
            <Component as Guest>::list(filter.clone(), page.clone())
        }
        pub fn get(id: &str) -> Result<String, Error> {
            <Component as Guest>::get(id.into())
        }
        pub fn create(body: &str, dialect: Dialect) -> Result<String, Error> {
            <Component as Guest>::create(body.into(), dialect)
        }
        pub fn put(id: &str, body: &str, dialect: Dialect) -> Result<PutOutcome, Error> {
            <Component as Guest>::put(id.into(), body.into(), dialect)
        }
        pub fn delete(id: &str) -> Result<(), Error> {
            <Component as Guest>::delete(id.into())
        }
    }
}

impl bindings::exports::twinlattice::http_face::handler::Guest for Component {
    fn handle(
        request: bindings::exports::twinlattice::http_face::handler::Request,
    ) -> bindings::exports::twinlattice::http_face::handler::Response {
        // Only the registry's routes come here; anything else is a 404 in
        // the AAS error body, as the gateway would answer it.
        http_io::into_face(registry_face::answer(http_io::Incoming::Whole(request), |_, _| None))
    }
}

use bindings::exports::twinlattice::registry::{shells, submodels};
use bindings::twinlattice::registry::types::{
    Dialect, Error, Page, PageRequest, PutOutcome, ShellFilter, SubmodelFilter,
};
use collection::Collection;
use descriptor::{Kind, Parsed};

struct Component;

impl shells::Guest for Component {
    fn list(filter: ShellFilter, page: PageRequest) -> Result<Page, Error> {
        let unfiltered = filter.asset_kind.is_none() && filter.asset_type.is_none() && filter.asset_ids.is_empty();
        let keep = |d: &serde_json::Value| descriptor::matches_shell_filter(d, &filter);
        Collection::SHELLS.list(&page, if unfiltered { None } else { Some(&keep) })
    }

    fn get(id: String) -> Result<String, Error> {
        Collection::SHELLS.get(&id)
    }

    fn resolve(key: String) -> Result<String, Error> {
        Collection::SHELLS.resolve(&key)
    }

    fn create(body: String, dialect: Dialect) -> Result<String, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Shell)?;
        Collection::SHELLS.create(parsed)
    }

    fn put(id: String, body: String, dialect: Dialect) -> Result<PutOutcome, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Shell)?;
        Collection::SHELLS.put(&id, parsed)
    }

    fn delete(id: String) -> Result<(), Error> {
        Collection::SHELLS.delete(&id)
    }

    fn list_submodels(shell_id: String, page: PageRequest) -> Result<Page, Error> {
        let shell = Collection::SHELLS.get_value(&shell_id)?;
        descriptor::page_nested(&shell, &page)
    }

    fn get_submodel(shell_id: String, submodel_id: String) -> Result<String, Error> {
        let shell = Collection::SHELLS.get_value(&shell_id)?;
        descriptor::find_nested(&shell, &submodel_id)
            .map(|d| d.to_string())
            .ok_or(Error::NotFound(submodel_id))
    }

    fn create_submodel(shell_id: String, body: String, dialect: Dialect) -> Result<String, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Submodel)?;
        Collection::SHELLS.locked(&shell_id, || {
            let mut shell = Collection::SHELLS.get_value(&shell_id)?;
            if descriptor::find_nested(&shell, &parsed.id).is_some() {
                return Err(Error::Conflict(parsed.id));
            }
            let text = parsed.value.to_string();
            descriptor::nested_mut(&mut shell).push(parsed.value);
            Collection::SHELLS.replace_value(&shell_id, shell)?;
            Ok(text)
        })
    }

    fn put_submodel(
        shell_id: String,
        submodel_id: String,
        body: String,
        dialect: Dialect,
    ) -> Result<PutOutcome, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Submodel)?;
        if parsed.id != submodel_id {
            return Err(Error::IdMismatch(format!(
                "the path names submodel descriptor {submodel_id:?} but the body's id is {:?}",
                parsed.id
            )));
        }
        Collection::SHELLS.locked(&shell_id, || {
            let mut shell = Collection::SHELLS.get_value(&shell_id)?;
            let nested = descriptor::nested_mut(&mut shell);
            let outcome = match nested.iter().position(|d| descriptor::id_of(d) == Some(&submodel_id)) {
                Some(at) => {
                    nested[at] = parsed.value;
                    PutOutcome::Replaced
                }
                None => {
                    nested.push(parsed.value);
                    PutOutcome::Created
                }
            };
            Collection::SHELLS.replace_value(&shell_id, shell)?;
            Ok(outcome)
        })
    }

    fn delete_submodel(shell_id: String, submodel_id: String) -> Result<(), Error> {
        Collection::SHELLS.locked(&shell_id, || {
            let mut shell = Collection::SHELLS.get_value(&shell_id)?;
            let nested = descriptor::nested_mut(&mut shell);
            let before = nested.len();
            nested.retain(|d| descriptor::id_of(d) != Some(&submodel_id));
            if nested.len() == before {
                return Err(Error::NotFound(submodel_id));
            }
            Collection::SHELLS.replace_value(&shell_id, shell)
        })
    }
}

impl submodels::Guest for Component {
    fn list(filter: SubmodelFilter, page: PageRequest) -> Result<Page, Error> {
        let keep = |d: &serde_json::Value| descriptor::matches_submodel_filter(d, &filter);
        Collection::SUBMODELS.list(&page, filter.semantic_id.is_some().then_some(&keep as &dyn Fn(&serde_json::Value) -> bool))
    }

    fn get(id: String) -> Result<String, Error> {
        Collection::SUBMODELS.get(&id)
    }

    fn create(body: String, dialect: Dialect) -> Result<String, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Submodel)?;
        Collection::SUBMODELS.create(parsed)
    }

    fn put(id: String, body: String, dialect: Dialect) -> Result<PutOutcome, Error> {
        let parsed = Parsed::from_body(&body, dialect, Kind::Submodel)?;
        Collection::SUBMODELS.put(&id, parsed)
    }

    fn delete(id: String) -> Result<(), Error> {
        Collection::SUBMODELS.delete(&id)
    }
}

bindings::export!(Component with_types_in bindings);

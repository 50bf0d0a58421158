//! The registry component: AAS shell and submodel descriptors (AAS Part 2 API
//! v3.0), stored through `wasi:keyvalue`, validated by the validator component
//! through `twinlattice:validation/validator`.
//!
//! HTTP is not this component's business: ids arrive decoded, outcomes leave
//! as typed WIT values, and the gateway maps them to status codes.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/registry",
        world: "registry-component",
        generate_all,
    });
}

mod collection;
mod descriptor;
mod kv;
mod ric;
mod twin_mirror;

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
        let mut shell = Collection::SHELLS.get_value(&shell_id)?;
        if descriptor::find_nested(&shell, &parsed.id).is_some() {
            return Err(Error::Conflict(parsed.id));
        }
        let text = parsed.value.to_string();
        descriptor::nested_mut(&mut shell).push(parsed.value);
        Collection::SHELLS.replace_value(&shell_id, shell)?;
        Ok(text)
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
    }

    fn delete_submodel(shell_id: String, submodel_id: String) -> Result<(), Error> {
        let mut shell = Collection::SHELLS.get_value(&shell_id)?;
        let nested = descriptor::nested_mut(&mut shell);
        let before = nested.len();
        nested.retain(|d| descriptor::id_of(d) != Some(&submodel_id));
        if nested.len() == before {
            return Err(Error::NotFound(submodel_id));
        }
        Collection::SHELLS.replace_value(&shell_id, shell)
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

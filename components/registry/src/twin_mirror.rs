//! One twin core: every stored or removed shell descriptor is reported to
//! the twins component (`twinlattice:twins/aas-twins`), which keeps the
//! shell as a Twin with Ledger entries and Identities. The registry's own
//! write has already committed when this runs; a failed report is logged
//! and repaired by the shell's next write, never turned into an AAS error.

use crate::bindings::twinlattice::twins::aas_twins::{self, MirrorError};
use crate::bindings::wasi::logging::logging::{log, Level};
use crate::descriptor::Kind;

fn report(what: &str, id_or_text: &str, r: Result<(), MirrorError>) {
    if let Err(e) = r {
        let why = match e {
            MirrorError::Invalid(s) | MirrorError::Storage(s) => s,
        };
        let head: String = id_or_text.chars().take(120).collect();
        log(Level::Warn, "registry", &format!("shell {what} not mirrored as a twin ({why}): {head}"));
    }
}

pub fn stored(kind: Kind, descriptor_json: &str) {
    if kind == Kind::Shell {
        report("store", descriptor_json, aas_twins::shell_stored(descriptor_json).map(drop));
    }
}

pub fn removed(kind: Kind, id: &str) {
    if kind == Kind::Shell {
        report("removal", id, aas_twins::shell_removed(id));
    }
}

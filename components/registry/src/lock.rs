//! A short exclusive lock on one descriptor while it is rewritten, from
//! `twinlattice:coordination/locks` (`wasi:keyvalue@0.2.0-draft` has no
//! compare-and-swap). Without it two concurrent POSTs of one id both find
//! it absent and both answer 201, and two concurrent changes of a shell's
//! nested submodel descriptors lose one of them.

use crate::bindings::twinlattice::coordination::locks;
use crate::bindings::twinlattice::registry::types::Error;

/// How long a holder may keep the lock before it is presumed dead (a
/// trapped instance) and the lock passes on. A write of one descriptor is
/// a validation and one store transaction: well below this.
const LEASE_MS: u32 = 10_000;

pub struct Lock {
    name: String,
    token: u64,
}

impl Lock {
    /// Wait for and take the lock of descriptor `id` of collection `prefix`.
    pub fn descriptor(prefix: &str, id: &str) -> Result<Lock, Error> {
        let name = format!("registry/{prefix}/{id}");
        match locks::acquire(&name, LEASE_MS) {
            Ok(token) => Ok(Lock { name, token }),
            Err(locks::LockError::Unavailable(why)) => Err(Error::Storage(format!("lock service: {why}"))),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        locks::release(&self.name, self.token);
    }
}

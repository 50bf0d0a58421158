//! `twinlattice:coordination/locks` for components: named FIFO locks in
//! memory, waited on asynchronously (a waiter costs no CPU and no worker
//! thread), with leases so that a holder that died does not block its
//! successors for ever.

use crate::bindings::locks;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use wasmtime::component::{HasData, Linker};

struct Holder {
    token: u64,
    expires: Instant,
}

#[derive(Default)]
struct Lock {
    holder: Option<Holder>,
    /// Waiters in arrival order, with the lease each asked for.
    waiters: VecDeque<(oneshot::Sender<u64>, Duration)>,
}

/// Every named lock of the host.
#[derive(Default)]
pub struct LockTable {
    locks: Mutex<HashMap<String, Lock>>,
    tokens: AtomicU64,
}

impl LockTable {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Lock>> {
        // The map is consistent between statements; a panic elsewhere
        // cannot leave it half-changed.
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn token(&self) -> u64 {
        self.tokens.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Take `name`, waiting in line while it is held.
    pub async fn acquire(&self, name: &str, lease: Duration) -> u64 {
        loop {
            let (waiting, expires) = {
                let mut table = self.table();
                let lock = table.entry(name.to_string()).or_default();
                let now = Instant::now();
                match &lock.holder {
                    Some(h) if h.expires > now => {
                        let (tx, rx) = oneshot::channel();
                        lock.waiters.push_back((tx, lease));
                        (rx, h.expires)
                    }
                    // Free, or its holder's lease ran out.
                    _ => {
                        let token = self.token();
                        lock.holder = Some(Holder { token, expires: now + lease });
                        return token;
                    }
                }
            };
            match tokio::time::timeout_at(expires, waiting).await {
                Ok(Ok(token)) => return token,
                // The lease ran out (or the hand-over was lost): look again.
                // Our place in line is given up; the dropped receiver is
                // skipped by the next release.
                _ => continue,
            }
        }
    }

    /// Hand `name` to the next live waiter, or free it.
    pub fn release(&self, name: &str, token: u64) {
        let mut table = self.table();
        let Some(lock) = table.get_mut(name) else { return };
        if lock.holder.as_ref().map(|h| h.token) != Some(token) {
            return;
        }
        while let Some((tx, lease)) = lock.waiters.pop_front() {
            let next = self.token();
            lock.holder = Some(Holder { token: next, expires: Instant::now() + lease });
            if tx.send(next).is_ok() {
                return;
            }
        }
        table.remove(name);
    }
}

pub struct LocksView<'a> {
    pub table: &'a Arc<LockTable>,
}

/// Longest lease a component may ask for.
const MAX_LEASE: Duration = Duration::from_secs(60);

impl locks::Host for LocksView<'_> {
    async fn acquire(&mut self, name: String, lease_ms: u32) -> wasmtime::Result<Result<u64, locks::LockError>> {
        let lease = Duration::from_millis(u64::from(lease_ms)).clamp(Duration::from_millis(1), MAX_LEASE);
        let table = self.table.clone();
        Ok(Ok(table.acquire(&name, lease).await))
    }

    async fn release(&mut self, name: String, token: u64) -> wasmtime::Result<()> {
        self.table.release(&name, token);
        Ok(())
    }
}

struct HasLocks;

impl HasData for HasLocks {
    type Data<'a> = LocksView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, f: fn(&mut T) -> LocksView<'_>) -> wasmtime::Result<()> {
    locks::add_to_linker::<_, HasLocks>(linker, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_dead_holder_is_replaced() {
        let table = Arc::new(LockTable::default());
        let first = table.acquire("l", Duration::from_secs(5)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (table, order) = (table.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let token = table.acquire("l", Duration::from_secs(5)).await;
                order.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                table.release("l", token);
            }));
            // Let each waiter queue before the next one.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        table.release("l", first);
        for w in waiters {
            w.await.expect("waiter task");
        }
        assert_eq!(*order.lock().unwrap_or_else(|e| e.into_inner()), vec![0, 1, 2]);
        // A holder that never releases loses the lock when its lease ends.
        let _dead = table.acquire("m", Duration::from_millis(30)).await;
        let started = Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(2), table.acquire("m", Duration::from_secs(1))).await;
        assert!(next.is_ok(), "the lease should have passed the lock on");
        assert!(started.elapsed() >= Duration::from_millis(25));
        // A stale token does not release the new holder's lock.
        table.release("m", _dead);
        assert!(tokio::time::timeout(Duration::from_millis(50), table.acquire("m", Duration::from_secs(1))).await.is_err());
    }
}

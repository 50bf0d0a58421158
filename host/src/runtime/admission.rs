//! Admission: how many requests and messages run component code at once.
//!
//! A request or message takes a slot before its first call into a component
//! and frees it when its answer is ready. A call that then waits — for a
//! receiver that answers slowly, for a retry's back-off — *steps out* of its
//! slot for the wait ([`away`]) and takes a slot again before its code runs
//! on, so slow receivers and retries never hold capacity that unrelated
//! requests need (security review H5). Waiting calls still hold their
//! component instances, so how many may wait at once is bounded too
//! (`max_waiting`); past it, a call waits in its slot as before.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots, and the places for calls that stepped out to wait.
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

/// A slot held by one request or message; dropping it frees the slot.
pub type Permit = OwnedSemaphorePermit;

/// A slot taken by [`Admission::enter`]; dropping it frees the slot.
pub struct Ticket {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    permit: Permit,
}

impl Ticket {
    /// Run `work` in this slot, so that waits inside it (see [`away`]) can
    /// step out of it. The slot is freed when `work` ends.
    pub fn run<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        let held = Held { slots: self.slots, waiting: self.waiting, permit: Mutex::new(Some(self.permit)) };
        HELD.scope(held, work)
    }
}

/// The bridges' inboxes (CoAP, MQTT) run a message's handling in a ticket.
impl twinlattice_bridges::inbox::Slot for Ticket {
    fn run<'a>(
        self: Box<Self>,
        work: twinlattice_bridges::inbox::BoxFuture<'a, ()>,
    ) -> twinlattice_bridges::inbox::BoxFuture<'a, ()> {
        Box::pin(Ticket::run(*self, work))
    }
}

/// What a request's task knows of its slot while its calls run.
struct Held {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    /// `None` while the call waits outside its slot.
    permit: Mutex<Option<Permit>>,
}

tokio::task_local! {
    static HELD: Held;
}

impl Admission {
    pub fn new(max_in_flight: usize, max_waiting: usize) -> Admission {
        Admission { slots: Arc::new(Semaphore::new(max_in_flight)), waiting: Arc::new(Semaphore::new(max_waiting)) }
    }

    /// Wait for a slot.
    pub async fn admit(&self) -> Permit {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the admission semaphore is never closed"),
        }
    }

    /// Wait for a slot, as a ticket whose work may step out of it (see
    /// [`Ticket::run`]).
    pub async fn enter(&self) -> Ticket {
        let permit = self.admit().await;
        Ticket { slots: self.slots.clone(), waiting: self.waiting.clone(), permit }
    }

    /// Slots free now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// How long a wait keeps its slot before it steps out. Most waits (a
/// delivery to a receiver that answers at once, an MQTT broker's PUBACK) end
/// well within it: stepping out for those would only let more calls in at
/// once than the warm instance pools hold, and each extra call pays for a new
/// instance. A slow receiver or a back-off steps out after it.
const GRACE: std::time::Duration = std::time::Duration::from_millis(10);

/// Run `wait` (host I/O or a timer, no component code); if it has not ended
/// after `GRACE`, wait for the rest outside the current slot, then take a
/// slot again. Outside a held slot, or when too many calls wait already,
/// `wait` simply runs.
pub async fn away<F: Future>(wait: F) -> F::Output {
    if HELD.try_with(|_| ()).is_err() {
        return wait.await;
    }
    let mut wait = std::pin::pin!(wait);
    match tokio::time::timeout(GRACE, wait.as_mut()).await {
        Ok(output) => output,
        Err(_) => step_out_for(wait).await,
    }
}

async fn step_out_for<F: Future>(wait: F) -> F::Output {
    let stepped_out = HELD
        .try_with(|held| {
            let place = held.waiting.clone().try_acquire_owned().ok()?;
            let mut slot = held.permit.lock().unwrap_or_else(|p| p.into_inner());
            // Already outside (a nested wait): nothing to give up.
            let released = slot.take()?;
            drop(released);
            Some((place, held.slots.clone()))
        })
        .ok()
        .flatten();
    let output = wait.await;
    if let Some((place, slots)) = stepped_out {
        let permit = match slots.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the admission semaphore is never closed"),
        };
        // The scope is still ours: `away` runs inside the task that holds it.
        let _ = HELD.try_with(|held| *held.permit.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit));
        drop(place);
    }
    output
}

/// Define `wasi:io/poll` (over wasmtime-wasi's own definition) so that a
/// guest blocking on a pollable — a retry's back-off timer, a stream —
/// waits outside its slot and holds no capacity meanwhile. Only the waiting
/// moves: the pollables are wasmtime-wasi's, and each function calls its
/// implementation. Shadowing replaces the whole instance, so all of it is
/// defined here.
pub fn wait_outside_the_slot(linker: &mut wasmtime::component::Linker<super::state::HostState>) -> anyhow::Result<()> {
    use wasmtime::component::{Resource, ResourceType};
    use wasmtime_wasi_io::bindings::wasi::io::poll::{Host, HostPollable};
    use wasmtime_wasi_io::poll::DynPollable;
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.6")?;
    poll.resource("pollable", ResourceType::host::<DynPollable>(), |mut store, rep| {
        HostPollable::drop(store.data_mut().table_mut(), Resource::new_own(rep))
    })?;
    poll.func_wrap_async("poll", |mut store, (pollables,): (Vec<Resource<DynPollable>>,)| {
        Box::new(async move {
            let ready = away(Host::poll(store.data_mut().table_mut(), pollables)).await?;
            Ok((ready,))
        })
    })?;
    poll.func_wrap_async("[method]pollable.block", |mut store, (pollable,): (Resource<DynPollable>,)| {
        Box::new(async move { away(HostPollable::block(store.data_mut().table_mut(), pollable)).await })
    })?;
    poll.func_wrap_async("[method]pollable.ready", |mut store, (pollable,): (Resource<DynPollable>,)| {
        // Never waits: no reason to leave the slot.
        Box::new(async move { Ok((HostPollable::ready(store.data_mut().table_mut(), pollable).await?,)) })
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn after_the_wait_the_call_is_back_in_a_slot() {
        let admission = Arc::new(Admission::new(1, 4));
        let ticket = admission.enter().await;
        let inside = admission.clone();
        let left_after_wait = ticket.run(async move { away(async {}).await; inside.available() }).await;
        assert_eq!(left_after_wait, 0);
        assert_eq!(admission.available(), 1, "the slot is freed when the work ends");
    }

    #[tokio::test]
    async fn while_one_call_waits_another_gets_its_slot() {
        let admission = Arc::new(Admission::new(1, 4));
        let ticket = admission.enter().await;
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let waiting = tokio::spawn(ticket.run(away(async { wait.await.ok() })));
        // The only slot is free while the first call waits.
        let second = tokio::time::timeout(Duration::from_secs(1), admission.admit()).await;
        assert!(second.is_ok(), "the waiting call kept its slot");
        drop(second);
        release.send(()).ok();
        assert!(waiting.await.is_ok());
        assert_eq!(admission.available(), 1);
    }

    #[tokio::test]
    async fn past_max_waiting_a_call_waits_in_its_slot() {
        let admission = Arc::new(Admission::new(1, 0));
        let ticket = admission.enter().await;
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let waiting = tokio::spawn(ticket.run(away(async { wait.await.ok() })));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(admission.available(), 0, "no place to wait outside: the slot stays taken");
        release.send(()).ok();
        assert!(waiting.await.is_ok());
        assert_eq!(admission.available(), 1);
    }

    #[tokio::test]
    async fn a_short_wait_keeps_its_slot() {
        let admission = Arc::new(Admission::new(1, 4));
        let ticket = admission.enter().await;
        let inside = admission.clone();
        let free_during_wait = ticket.run(away(async move { inside.available() })).await;
        assert_eq!(free_during_wait, 0, "a wait shorter than the grace period stepped out");
    }

    #[tokio::test]
    async fn outside_a_held_slot_away_just_waits() {
        assert_eq!(away(async { 7 }).await, 7);
    }
}

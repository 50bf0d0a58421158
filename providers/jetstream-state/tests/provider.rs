//! The provider binary end to end: started the way the wasmCloud host
//! starts it (host data, base64 JSON, on stdin) against a real nats-server,
//! and called over wRPC the way the host forwards a component's calls
//! (bindings of `tests/wit`, which imports what the provider exports).

mod common;

use base64::Engine as _;
use bytes::Bytes;
use common::{connect, NatsServer, TestResult};
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "client",
        path: "tests/wit",
        generate_all,
    });
}

use bindings::twinlattice::coordination::locks;
use bindings::wrpc::keyvalue::{atomics, batch, store};

const LATTICE: &str = "testlattice";
const PROVIDER_KEY: &str = "VJETSTREAMSTATETESTPROVIDER";

/// The provider process, killed when dropped.
struct ProviderProcess(Child);

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn start_provider(server: &NatsServer, log: &std::path::Path) -> Result<ProviderProcess, BoxError> {
    let host_data = serde_json::json!({
        "host_id": "NTESTHOST",
        "lattice_rpc_prefix": LATTICE,
        "lattice_rpc_url": server.url(),
        "provider_key": PROVIDER_KEY,
        "instance_id": "test-instance",
        "env_values": {},
        "link_definitions": [],
        "config": {
            "bucket_prefix": "e2e",
            "locks_bucket": "e2e_locks",
            "lock_wait_ms": "300",
        },
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&host_data)?);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jetstream-state-provider"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    writeln!(stdin, "{encoded}")?;
    Ok(ProviderProcess(child))
}

/// A wRPC call with a bound: a lost answer fails the test instead of
/// hanging it.
async fn within<T>(call: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, BoxError> {
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err("wRPC call not answered within 10 s".into()),
    }
}

fn werr(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

/// Wait until the provider answers: the first answered call shows it is
/// serving. `set` is idempotent, so an attempt whose answer was lost (the
/// provider was still subscribing) is simply repeated.
async fn wait_until_serving(wrpc: &wrpc_transport_nats::Client, log: &std::path::Path) -> TestResult {
    let started = Instant::now();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            store::set(wrpc, None, "registry", "urn:a#1.x", &Bytes::from("v1")),
        )
        .await;
        match attempt {
            Ok(Ok(result)) => {
                result.map_err(werr)?;
                return Ok(());
            }
            _ if started.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("provider never answered: {other:?}\nprovider log:\n{log}").into());
            }
        }
    }
}

// One thread, like the lattice host (lattice/host/src/main.rs): on a
// multi-threaded runtime wrpc-transport-nats 0.29's client can drop a reply
// that arrives before its subscription is registered, and the call hangs.
#[tokio::test(flavor = "current_thread")]
async fn the_binary_serves_keyvalue_and_locks_over_wrpc() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = NatsServer::start(dir.path());
    let log = dir.path().join("provider.log");
    let _provider = start_provider(&server, &log)?;
    let nats = connect(&server).await;
    let wrpc = wrpc_transport_nats::Client::new(nats.clone(), format!("{LATTICE}.{PROVIDER_KEY}"), None).await?;

    wait_until_serving(&wrpc, &log).await?;

    // store
    let got = within(store::get(&wrpc, None, "registry", "urn:a#1.x")).await?.map_err(werr)?;
    assert_eq!(got.as_deref(), Some(&b"v1"[..]));
    assert!(within(store::exists(&wrpc, None, "registry", "urn:a#1.x")).await?.map_err(werr)?);
    assert_eq!(within(store::get(&wrpc, None, "registry", "absent")).await?.map_err(werr)?, None);
    // It landed in the mapped bucket under the encoded key.
    let raw = async_nats::jetstream::new(nats.clone()).get_key_value("e2e_registry").await?;
    assert_eq!(raw.get("urn=3Aa=231=2Ex").await?.as_deref(), Some(&b"v1"[..]));

    // atomics: decimal text, as on the embedded host
    assert_eq!(within(atomics::increment(&wrpc, None, "registry", "seq", 2)).await?.map_err(werr)?, 2);
    assert_eq!(within(atomics::increment(&wrpc, None, "registry", "seq", 1)).await?.map_err(werr)?, 3);
    let seq = within(store::get(&wrpc, None, "registry", "seq")).await?.map_err(werr)?;
    assert_eq!(seq.as_deref(), Some(&b"3"[..]));

    // batch
    let (one, two) = (Bytes::from("1"), Bytes::from("2"));
    within(batch::set_many(&wrpc, None, "twins", &[("t.1", &one), ("t 2", &two)])).await?.map_err(werr)?;
    let many = within(batch::get_many(&wrpc, None, "twins", &["t.1", "nope", "t 2"])).await?.map_err(werr)?;
    let many: Vec<Option<(String, Vec<u8>)>> = many.into_iter().map(|o| o.map(|(k, v)| (k, v.to_vec()))).collect();
    assert_eq!(many, vec![Some(("t.1".into(), b"1".to_vec())), None, Some(("t 2".into(), b"2".to_vec()))]);
    let listed = within(store::list_keys(&wrpc, None, "twins", None)).await?.map_err(werr)?;
    assert_eq!((listed.keys, listed.cursor), (vec!["t 2".to_string(), "t.1".to_string()], None));
    within(batch::delete_many(&wrpc, None, "twins", &["t.1"])).await?.map_err(werr)?;
    within(store::delete(&wrpc, None, "twins", "t 2")).await?.map_err(werr)?;
    let listed = within(store::list_keys(&wrpc, None, "twins", None)).await?.map_err(werr)?;
    assert!(listed.keys.is_empty());

    // errors map to the WIT's variants
    let counter = within(atomics::increment(&wrpc, None, "registry", "urn:a#1.x", 1)).await?;
    assert!(matches!(counter, Err(store::Error::Other(ref m)) if m.contains("not a counter")), "{counter:?}");
    let nameless = within(store::get(&wrpc, None, "", "k")).await?;
    assert!(matches!(nameless, Err(store::Error::NoSuchStore)), "{nameless:?}");
    let reserved = within(store::get(&wrpc, None, "locks", "k")).await?;
    assert!(matches!(reserved, Err(store::Error::AccessDenied)), "{reserved:?}");

    // locks
    let token = within(locks::acquire(&wrpc, None, "ledger", 30_000)).await?.map_err(werr)?;
    within(locks::release(&wrpc, None, "ledger", token + 1)).await?;
    let blocked = within(locks::acquire(&wrpc, None, "ledger", 1_000)).await?;
    assert!(matches!(blocked, Err(locks::LockError::Unavailable(_))), "{blocked:?}");
    within(locks::release(&wrpc, None, "ledger", token)).await?;
    let next = within(locks::acquire(&wrpc, None, "ledger", 1_000)).await?.map_err(werr)?;
    assert_ne!(next, token);
    within(locks::release(&wrpc, None, "ledger", next)).await?;
    Ok(())
}

/// The provider killed (SIGKILL) in the middle of a set-many, again and
/// again: after each kill every key of the batch holds the same generation,
/// the one before the batch or the batch's own, never a mix.
#[tokio::test(flavor = "current_thread")]
async fn a_provider_killed_mid_batch_leaves_all_or_nothing() -> TestResult {
    const KEYS: usize = 300;
    const ROUNDS: u32 = 12;
    let dir = tempfile::tempdir()?;
    let server = NatsServer::start(dir.path());
    let nats = connect(&server).await;
    let wrpc = wrpc_transport_nats::Client::new(nats.clone(), format!("{LATTICE}.{PROVIDER_KEY}"), None).await?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("twin:{i:04}")).collect();
    // Generation `g` of every key: its number, padded so that a batch takes
    // long enough to be interrupted.
    let generation = |g: u32| Bytes::from(format!("{g:08}").into_bytes().into_iter().chain(std::iter::repeat_n(b'.', 2048)).collect::<Vec<u8>>());
    let set_many = |g: u32| {
        let value = generation(g);
        let wrpc = wrpc.clone();
        let keys = keys.clone();
        async move {
            let items: Vec<(&str, &Bytes)> = keys.iter().map(|k| (k.as_str(), &value)).collect();
            batch::set_many(&wrpc, None, "crash", &items).await
        }
    };

    // Generation 0, whole (the first also creates the bucket); how long
    // the second takes sets the kill points.
    let log = dir.path().join("provider-0.log");
    let provider = start_provider(&server, &log)?;
    wait_until_serving(&wrpc, &log).await?;
    within(set_many(0)).await?.map_err(werr)?;
    let started = Instant::now();
    within(set_many(0)).await?.map_err(werr)?;
    let full = started.elapsed();
    drop(provider);

    let raw = async_nats::jetstream::new(nats.clone()).get_key_value("e2e_crash").await?;
    let mut torn = Vec::new();
    let mut committed = 0;
    for round in 1..=ROUNDS {
        let log = dir.path().join(format!("provider-{round}.log"));
        let provider = start_provider(&server, &log)?;
        wait_until_serving(&wrpc, &log).await?;
        // Kill points spread over (and a little past) one batch's duration.
        let at = full.mul_f64(f64::from(round) / f64::from(ROUNDS) * 1.2);
        let call = set_many(round);
        tokio::pin!(call);
        tokio::select! {
            _ = &mut call => {},
            () = tokio::time::sleep(at) => {},
        }
        drop(provider); // SIGKILL, then wait for the process to end
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for key in &keys {
            let value = raw.get(key.replace(':', "=3A")).await?;
            let tag = value.map(|v| String::from_utf8_lossy(&v[..8.min(v.len())]).into_owned()).unwrap_or_else(|| "absent".into());
            *seen.entry(tag).or_default() += 1;
        }
        if seen.len() != 1 {
            torn.push((round, at, seen));
        } else if seen.contains_key(&format!("{round:08}")) {
            committed += 1;
        }
    }
    eprintln!("one batch of {KEYS} keys took {full:?}; {committed} of {ROUNDS} interrupted batches had committed");
    assert!(torn.is_empty(), "batches torn by a provider kill (round, kill after, generations seen): {torn:?}");
    Ok(())
}

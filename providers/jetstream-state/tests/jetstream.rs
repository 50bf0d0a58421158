//! The library core against a real nats-server with JetStream
//! (`common`). Each test runs its own server on a free loopback port with a
//! temporary store directory.

mod common;

use bytes::Bytes;
use common::{connect, nats_server_bin, NatsServer, TestResult};
use jetstream_state::{keys, KvError, Settings, State};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server and the provider state over it.
struct Fixture {
    _dir: tempfile::TempDir,
    _server: NatsServer,
    client: async_nats::Client,
    state: State,
}

async fn fixture_with(settings: Settings) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    let client = connect(&server).await;
    let state = State::new(client.clone(), &settings);
    Fixture { _dir: dir, _server: server, client, state }
}

async fn fixture() -> Fixture {
    fixture_with(Settings::default()).await
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn the_server_is_the_pinned_version() {
    // 2.12 is the first with atomic batch publish (ADR-50), which set-many
    // and delete-many are built on.
    let out = Command::new(nats_server_bin()).arg("--version").output().expect("run nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("v2.12.8"), "expected nats-server v2.12.8, got {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_set_delete_exists() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    assert_eq!(kv.get("registry", "k").await?, None);
    assert!(!kv.exists("registry", "k").await?);
    kv.set("registry", "k", b("v1")).await?;
    assert_eq!(kv.get("registry", "k").await?, Some(b("v1")));
    assert!(kv.exists("registry", "k").await?);
    kv.set("registry", "k", b("v2")).await?;
    assert_eq!(kv.get("registry", "k").await?, Some(b("v2")));
    // Buckets are separate.
    assert_eq!(kv.get("twins", "k").await?, None);
    kv.delete("registry", "k").await?;
    assert_eq!(kv.get("registry", "k").await?, None);
    assert!(!kv.exists("registry", "k").await?);
    // Deleting what is absent is fine, and a deleted key can be set again.
    kv.delete("registry", "never").await?;
    kv.set("registry", "k", b("v3")).await?;
    assert_eq!(kv.get("registry", "k").await?, Some(b("v3")));
    // Empty values are values.
    kv.set("registry", "empty", Bytes::new()).await?;
    assert_eq!(kv.get("registry", "empty").await?, Some(Bytes::new()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_map_to_prefixed_jetstream_buckets_and_keys_are_encoded() -> TestResult {
    let settings = Settings { bucket_prefix: "tl".into(), locks_bucket: "tl_locks".into(), ..Settings::default() };
    let f = fixture_with(settings).await;
    f.state.kv.set("my.bucket", "urn:x#1.2", b("v")).await?;
    let js = async_nats::jetstream::new(f.client.clone());
    let raw = js.get_key_value("tl_my_bucket").await?;
    let status = raw.status().await?;
    assert_eq!(status.info.config.max_messages_per_subject, 1, "history 1");
    assert_eq!(status.info.config.storage, async_nats::jetstream::stream::StorageType::File);
    assert_eq!(raw.get("urn=3Ax=231=2E2").await?, Some(b("v")));
    assert_eq!(keys::encode("urn:x#1.2"), "urn=3Ax=231=2E2");
    // An identifier that lands on the locks bucket is refused.
    assert!(matches!(f.state.kv.get("locks", "k").await, Err(KvError::ReservedBucket { .. })));
    assert!(matches!(f.state.kv.get("", "k").await, Err(KvError::InvalidBucket { .. })));
    Ok(())
}

const ODD_KEYS: &[&str] = &[
    "",
    "plain",
    "a.b",
    ".lead",
    "trail.",
    "a..b",
    "=",
    "=41",
    "with space",
    "frag#ment",
    "urn:example:aas:1",
    "https://example.com/ids/sm/1#x?y=z&w",
    "ünïcödé",
    "日本語",
    "🦀",
    "*>",
    "a/b/c",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_keys_store_and_list_as_given() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    for (i, key) in ODD_KEYS.iter().enumerate() {
        kv.set("odd", key, Bytes::from(i.to_string())).await?;
    }
    for (i, key) in ODD_KEYS.iter().enumerate() {
        assert_eq!(kv.get("odd", key).await?, Some(Bytes::from(i.to_string())), "key {key:?}");
        assert!(kv.exists("odd", key).await?, "key {key:?}");
    }
    let page = kv.list_keys("odd", None).await?;
    let mut expected: Vec<String> = ODD_KEYS.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(page.keys, expected);
    assert_eq!(page.cursor, None);
    kv.delete("odd", "a.b").await?;
    assert_eq!(kv.get("odd", "a.b").await?, None);
    assert_eq!(kv.get("odd", "a..b").await?, Some(Bytes::from("5")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn increment_counts_in_decimal_and_loses_no_update() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    assert_eq!(kv.increment("c", "n", 5).await?, 5);
    assert_eq!(kv.increment("c", "n", 2).await?, 7);
    // The bytes the embedded host stores: decimal text.
    assert_eq!(kv.get("c", "n").await?, Some(b("7")));
    // After a delete the counter starts again from 0.
    kv.delete("c", "n").await?;
    assert_eq!(kv.increment("c", "n", 1).await?, 1);
    kv.set("c", "text", b("not a number")).await?;
    assert!(matches!(kv.increment("c", "text", 1).await, Err(KvError::NotACounter { .. })));
    kv.set("c", "preset", b(" 41 ")).await?;
    assert_eq!(kv.increment("c", "preset", 1).await?, 42);

    // Eight writers at once: every increment lands exactly once.
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                seen.push(kv.increment("c", "shared", 1).await?);
            }
            Ok::<_, KvError>(seen)
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for v in t.await?? {
            assert!(all.insert(v), "value {v} handed out twice");
        }
    }
    assert_eq!(all, (1..=TASKS * EACH).collect::<BTreeSet<u64>>());
    assert_eq!(kv.get("c", "shared").await?, Some(Bytes::from((TASKS * EACH).to_string())));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_read_write_and_delete_key_by_key() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    kv.set_many(
        "batch",
        vec![
            ("a".into(), b("1")),
            ("b.c".into(), b("2")),
            ("dup".into(), b("first")),
            ("ü".into(), b("3")),
            ("dup".into(), b("last")),
        ],
    )
    .await?;
    let got = kv.get_many("batch", vec!["a".into(), "missing".into(), "b.c".into(), "dup".into(), "ü".into()]).await?;
    assert_eq!(
        got,
        vec![
            Some(("a".to_string(), b("1"))),
            None,
            Some(("b.c".to_string(), b("2"))),
            Some(("dup".to_string(), b("last"))),
            Some(("ü".to_string(), b("3"))),
        ]
    );
    kv.delete_many("batch", vec!["a".into(), "ü".into(), "never-there".into()]).await?;
    let got = kv.get_many("batch", vec!["a".into(), "b.c".into(), "ü".into()]).await?;
    assert_eq!(got, vec![None, Some(("b.c".to_string(), b("2"))), None]);
    assert_eq!(kv.get_many("batch", Vec::new()).await?, Vec::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_keys_pages_through_sorted_keys() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    let empty = kv.list_keys("list", None).await?;
    assert!(empty.keys.is_empty() && empty.cursor.is_none());

    let n = 2 * jetstream_state::kv::LIST_KEYS_PAGE + 345;
    let keys: Vec<String> = (0..n).map(|i| format!("key.{i:05}#")).collect();
    // Written in reverse, so the stream's order is not the listing's; in
    // batches of at most MAX_BATCH keys, the most one atomic batch takes.
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    for chunk in reversed.chunks(jetstream_state::MAX_BATCH) {
        kv.set_many("list", chunk.iter().map(|k| (k.clone(), b("x"))).collect()).await?;
    }

    let mut listed = Vec::new();
    let mut cursors = Vec::new();
    let mut cursor = None;
    loop {
        let page = kv.list_keys("list", cursor).await?;
        assert!(page.keys.len() <= jetstream_state::kv::LIST_KEYS_PAGE);
        listed.extend(page.keys);
        cursors.push(page.cursor);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let page = jetstream_state::kv::LIST_KEYS_PAGE as u64;
    assert_eq!(cursors, vec![Some(page), Some(2 * page), None]);
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);
    // A cursor past the end is an empty last page.
    let past = kv.list_keys("list", Some(n as u64 + 10)).await?;
    assert!(past.keys.is_empty() && past.cursor.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_excludes_concurrent_holders() -> TestResult {
    let f = fixture().await;
    let inside = Arc::new(AtomicUsize::new(0));
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let state = f.state.clone();
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                let token = state.locks.acquire("ledger", Duration::from_secs(10)).await?;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                // A read-modify-write with no atomicity of its own.
                let n: u64 = match state.kv.get("data", "count").await? {
                    Some(v) => std::str::from_utf8(&v)?.parse()?,
                    None => 0,
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
                state.kv.set("data", "count", Bytes::from((n + 1).to_string())).await?;
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(state.locks.release("ledger", token).await?, "holder's release refused");
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(f.state.kv.get("data", "count").await?, Some(Bytes::from((TASKS * EACH).to_string())));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_holders_token_releases() -> TestResult {
    let settings = Settings { lock_max_wait: Duration::from_millis(300), ..Settings::default() };
    let f = fixture_with(settings).await;
    let locks = &f.state.locks;
    let token = locks.acquire("l", Duration::from_secs(30)).await?;
    assert!(!locks.release("l", token + 1).await?, "a stranger's token released the lock");
    assert!(!locks.release("l", 0).await?);
    assert!(!locks.release("other", token).await?, "a token released another lock");
    // Still held: a second acquire gives up after the configured wait.
    let started = Instant::now();
    let second = locks.acquire("l", Duration::from_secs(1)).await;
    assert!(matches!(second, Err(jetstream_state::LockError::Timeout { .. })), "{second:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(locks.release("l", token).await?);
    // A second release of the same token is ignored.
    assert!(!locks.release("l", token).await?);
    let next = locks.acquire("l", Duration::from_secs(1)).await?;
    assert_ne!(next, token);
    assert!(locks.release("l", next).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_is_taken_over() -> TestResult {
    let settings = Settings { lock_max_wait: Duration::from_secs(5), ..Settings::default() };
    let f = fixture_with(settings).await;
    let locks = &f.state.locks;
    // A holder that never releases (it "crashed").
    let dead = locks.acquire("job", Duration::from_millis(300)).await?;
    let started = Instant::now();
    let next = locks.acquire("job", Duration::from_secs(30)).await?;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "taken over before the lease ended ({waited:?})");
    assert!(waited < Duration::from_secs(3), "takeover took {waited:?}");
    assert_ne!(dead, next);
    // The dead holder's late release does not free the new holder's lock.
    assert!(!locks.release("job", dead).await?);
    let short = Settings { lock_max_wait: Duration::from_millis(200), ..Settings::default() };
    let other = State::new(f.client.clone(), &short);
    assert!(other.locks.acquire("job", Duration::from_secs(1)).await.is_err(), "lock was freed by a stale token");
    assert!(locks.release("job", next).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_survives_a_server_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let settings = Settings::default();
    let server = NatsServer::start(dir.path());
    let client = connect(&server).await;
    let state = State::new(client.clone(), &settings);
    state.kv.set("registry", "shell:1#a.b", b("descriptor")).await?;
    state.kv.set_many("twins", vec![("t1".into(), b("one")), ("t2".into(), b("two"))]).await?;
    state.kv.increment("registry", "seq", 41).await?;
    state.kv.set("registry", "gone", b("x")).await?;
    state.kv.delete("registry", "gone").await?;
    let token = state.locks.acquire("held", Duration::from_secs(60)).await?;
    drop(client);
    server.kill();

    let server = NatsServer::start(dir.path());
    let client = connect(&server).await;
    let state = State::new(client.clone(), &settings);
    assert_eq!(state.kv.get("registry", "shell:1#a.b").await?, Some(b("descriptor")));
    assert_eq!(state.kv.get("twins", "t2").await?, Some(b("two")));
    assert_eq!(state.kv.get("registry", "gone").await?, None);
    assert_eq!(state.kv.increment("registry", "seq", 1).await?, 42);
    let listed = state.kv.list_keys("registry", None).await?.keys;
    assert_eq!(listed, vec!["seq".to_string(), "shell:1#a.b".to_string()]);
    // The lock is still held by the same token, which still releases it.
    assert!(!state.locks.release("held", token + 1).await?);
    assert!(state.locks.release("held", token).await?);
    drop(server);
    Ok(())
}

// --- Batches are atomic (issue 13, security review M3) ---------------------

/// The values of `keys` in bucket `bucket`, absent ones as `None`.
async fn values(kv: &jetstream_state::KeyValue, bucket: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>, KvError> {
    Ok(kv.get_many(bucket, keys.to_vec()).await?.into_iter().map(|o| o.map(|(_, v)| v)).collect())
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i:04}")).collect()
}

/// A set-many of which the server refuses one message (a value over the
/// bucket's `max_value_size`) leaves every key as it was: the ones before
/// and after the refused one are not written either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_many_the_server_refuses_in_part_writes_nothing() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    // The bucket exists already (as one made by an older provider), with a
    // value size limit that one of the batch's values breaks.
    let js = async_nats::jetstream::new(f.client.clone());
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: "twinlattice_small".into(),
        history: 1,
        max_value_size: 64,
        ..Default::default()
    })
    .await?;
    let keys = numbered("k", 10);
    for key in &keys {
        kv.set("small", key, b("before")).await?;
    }
    let batch: Vec<(String, Bytes)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), if i == 5 { Bytes::from(vec![b'x'; 100]) } else { b("after") }))
        .collect();
    let result = kv.set_many("small", batch).await;
    assert!(matches!(result, Err(KvError::BatchRefused { .. })), "a value over max_value_size: {result:?}");
    assert_eq!(values(kv, "small", &keys).await?, vec![Some(b("before")); keys.len()], "the batch was torn");
    // Nor are absent keys created by a refused batch.
    let fresh = numbered("fresh", 10);
    let batch: Vec<(String, Bytes)> =
        fresh.iter().enumerate().map(|(i, k)| (k.clone(), Bytes::from(vec![b'y'; if i == 9 { 65 } else { 1 }]))).collect();
    assert!(kv.set_many("small", batch).await.is_err());
    assert_eq!(values(kv, "small", &fresh).await?, vec![None; fresh.len()], "part of a refused batch was stored");
    Ok(())
}

/// A batch over the server's limit of messages per atomic batch (1,000) is
/// refused whole, before anything is sent: no key is written or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_over_the_limit_is_refused_whole() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    let keys = numbered("k", 1_001);
    let result = kv.set_many("big", keys.iter().map(|k| (k.clone(), b("v"))).collect()).await;
    assert!(matches!(result, Err(KvError::BatchTooLarge { count: 1_001, max: 1_000, .. })), "{result:?}");
    assert!(kv.list_keys("big", None).await?.keys.is_empty(), "part of an over-limit set-many was stored");
    // 1,000 distinct keys (a key given twice counts once) is within it.
    let mut within: Vec<(String, Bytes)> = keys[..1_000].iter().map(|k| (k.clone(), b("v"))).collect();
    within.push((keys[0].clone(), b("again")));
    kv.set_many("big", within).await?;
    assert_eq!(kv.get("big", &keys[0]).await?, Some(b("again")));
    assert_eq!(kv.list_keys("big", Some(999)).await?.keys, vec![keys[999].clone()]);
    let result = kv.delete_many("big", keys.clone()).await;
    assert!(matches!(result, Err(KvError::BatchTooLarge { count: 1_001, .. })), "{result:?}");
    assert_eq!(kv.list_keys("big", None).await?.keys.len(), 1_000, "part of an over-limit delete-many was applied");
    kv.delete_many("big", keys[..1_000].to_vec()).await?;
    assert!(kv.list_keys("big", None).await?.keys.is_empty());
    Ok(())
}

/// A value larger than the server takes in one message fails the batch
/// before anything is sent (the server would close the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_many_with_a_value_over_max_payload_writes_nothing() -> TestResult {
    let f = fixture().await;
    let kv = &f.state.kv;
    let keys = numbered("k", 4);
    let mut batch: Vec<(String, Bytes)> = keys.iter().map(|k| (k.clone(), b("v"))).collect();
    batch[2].1 = Bytes::from(vec![0u8; 2 << 20]);
    let result = tokio::time::timeout(Duration::from_secs(10), kv.set_many("payload", batch)).await?;
    assert!(matches!(result, Err(KvError::ValueTooLarge { ref key, .. }) if key == "k:0002"), "a 2 MiB value: {result:?}");
    assert_eq!(values(kv, "payload", &keys).await?, vec![None; keys.len()], "the batch was torn");
    // The connection still works.
    kv.set_many("payload", keys.iter().map(|k| (k.clone(), b("ok"))).collect()).await?;
    assert_eq!(values(kv, "payload", &keys).await?, vec![Some(b("ok")); keys.len()]);
    Ok(())
}

/// A bucket made before atomic batches (by an older provider, on a 2.11
/// server) has its stream updated to allow atomic publish when the
/// provider opens it; its data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_bucket_is_updated_to_allow_atomic_batches() -> TestResult {
    let f = fixture().await;
    let js = async_nats::jetstream::new(f.client.clone());
    let old = js
        .create_key_value(async_nats::jetstream::kv::Config { bucket: "twinlattice_old".into(), history: 1, ..Default::default() })
        .await?;
    old.put("kept", b("v")).await?;
    let allow_atomic = |info: &serde_json::Value| info.pointer("/config/allow_atomic").and_then(|v| v.as_bool()).unwrap_or(false);
    let info: serde_json::Value = js.request("STREAM.INFO.KV_twinlattice_old", &serde_json::json!({})).await?;
    assert!(!allow_atomic(&info), "{info}");
    f.state.kv.set_many("old", vec![("a".into(), b("1")), ("b".into(), b("2"))]).await?;
    let info: serde_json::Value = js.request("STREAM.INFO.KV_twinlattice_old", &serde_json::json!({})).await?;
    assert!(allow_atomic(&info), "{info}");
    assert_eq!(info.pointer("/config/max_msgs_per_subject").and_then(|v| v.as_i64()), Some(1), "{info}");
    assert_eq!(f.state.kv.get("old", "kept").await?, Some(b("v")));
    assert_eq!(f.state.kv.get("old", "b").await?, Some(b("2")));
    Ok(())
}

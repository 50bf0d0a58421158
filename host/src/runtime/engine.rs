//! The wasmtime engine and component loading with an on-disk cache of
//! compiled code, so a start after the first pays no compilation.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Instances the pooling allocator keeps slots for. Each request on the HTTP
/// face takes one gateway instance; service components keep a few warm.
const MAX_COMPONENT_INSTANCES: u32 = 1_500;
/// The largest linear memory a component may grow to.
const MAX_MEMORY_BYTES: usize = 512 << 20;
/// Bytes of each recycled memory or fiber stack kept mapped between uses.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// How often the engine's epoch advances: the resolution of call deadlines.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

pub fn new_engine() -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_COMPONENT_INSTANCES)
        .total_core_instances(MAX_COMPONENT_INSTANCES * 4)
        .total_memories(MAX_COMPONENT_INSTANCES * 2)
        .total_tables(MAX_COMPONENT_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Reset recycled slots with memset instead of madvise: returning
        // pages to the kernel costs a TLB shootdown on every core per
        // instance, which dominated request cost when measured.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES)
        .decommit_batch_size(64);
    let mut config = Config::new();
    config
        .async_support(true)
        // Every call gets a deadline (`Store::set_epoch_deadline` when an
        // instance is taken from its pool): a guest stuck in a loop traps
        // instead of pinning a worker thread for ever.
        .epoch_interruption(true)
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).context("failed to create the wasmtime engine")
}

/// Load the component at `path`, from `cache_dir` when it holds code
/// compiled from the same bytes by a compatible engine.
pub fn load_component(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("failed to read component {}", path.display()))?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(&bytes);
    digest.update(engine_hash.finish().to_le_bytes());
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("component");
    let cached = cache_dir.join(format!("{stem}-{}.cwasm", &hex::encode(digest.finalize())[..24]));
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` of this
        // program into the host's own cache directory, and its name binds it
        // to these exact component bytes and this engine's configuration.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(file = %cached.display(), error = %e, "ignoring unusable compiled-code cache entry"),
        }
    }
    let component = Component::new(engine, &bytes).with_context(|| format!("failed to compile {}", path.display()))?;
    if let Err(e) = write_cache(&component, cache_dir, &cached) {
        tracing::warn!(error = %e, "could not cache compiled component");
    }
    Ok(component)
}

fn write_cache(component: &Component, dir: &Path, file: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Advance `engine`'s epoch every `EPOCH_TICK`, for as long as the process
/// runs. One thread per engine; it only sleeps and increments a counter.
pub fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.clone();
    let spawned = std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || loop {
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
    });
    if let Err(e) = spawned {
        // Without the ticker no deadline ever passes: calls still work, unbounded.
        tracing::error!(error = %e, "cannot start the epoch ticker; calls have no deadline");
    }
}

/// A call deadline in epoch ticks (at least one).
pub fn deadline_ticks(deadline: std::time::Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Whether `error` is (or was caused by) a call that ran past its deadline.
pub fn is_deadline(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt))
}

//! What the project's wasmCloud v1 provider binaries (`providers/*`) share:
//! logging set up from the host's log level, and a `main` that runs the
//! provider on the runtime it needs and reports a failure as one line.

use std::future::Future;
use std::process::ExitCode;
use wasmcloud_provider_sdk::core::logging::Level;

/// Log to stderr (the host forwards it to its own log) at the host's level,
/// unless `RUST_LOG` says otherwise.
pub fn init_tracing(level: Option<&Level>) {
    let default = match level {
        Some(Level::Error | Level::Critical) => "error",
        Some(Level::Warn) => "warn",
        Some(Level::Debug) => "debug",
        Some(Level::Trace) => "trace",
        Some(Level::Info) | None => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The runtime a provider runs on.
pub enum Runtime {
    /// One thread. Needed by a provider that invokes components over
    /// wrpc-transport-nats 0.29, whose reply demultiplexer can drop a fast
    /// reply on a multi-threaded runtime.
    CurrentThread,
    MultiThread,
}

/// Run `provider` to its end; a failure is printed as one line with its
/// causes (not anyhow's Debug, a backtrace when RUST_BACKTRACE is set) and
/// exits with status 1.
pub fn main<F: Future<Output = anyhow::Result<()>>>(name: &str, runtime: Runtime, provider: F) -> ExitCode {
    let builder = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let result = builder
        .map_err(|e| anyhow::anyhow!("cannot start the tokio runtime: {e}"))
        .and_then(|runtime| runtime.block_on(provider));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

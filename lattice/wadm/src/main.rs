//! wadm, the wasmCloud v1 application deployment manager: the published
//! library's own command line (`wadm --help`), run until it stops or Ctrl-C.

use clap::Parser;
use wadm::config::WadmConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WadmConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut tasks = wadm::start_wadm(config).await?;
    tokio::select! {
        done = tasks.join_next() => match done {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e.context("wadm stopped")),
            Some(Err(e)) => Err(anyhow::anyhow!("wadm task failed: {e}")),
        },
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

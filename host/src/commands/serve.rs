//! `twinlattice serve`: the embedded host with every component.

use crate::runtime::{Runtime, RuntimeOptions};
use crate::{http_server, settings, ServeArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let mut config = vec![
        ("max-body-bytes".to_string(), args.max_body_bytes.to_string()),
        ("coap-port".to_string(), args.coap_port.to_string()),
        ("mqtt-port".to_string(), args.mqtt_port.to_string()),
    ];
    if let Some(host) = &args.mqtt_host {
        config.push(("mqtt-host".into(), host.clone()));
    }
    config.extend(settings::component_config_from_env());
    let options = RuntimeOptions {
        components_dir: args.runtime.components_dir.clone(),
        data_dir: args.data_dir.clone(),
        cache_dir: args.runtime.cache_dir.clone(),
        fsync: args.fsync,
        config,
    };
    let runtime = Arc::new(Runtime::start(&options).await?);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "twinlattice http listening on http://{addr}")?;
    writeln!(
        out,
        "twinlattice ready in {} ms (components: {}; data: {})",
        started.elapsed().as_millis(),
        runtime.components().join(", "),
        args.data_dir.display()
    )?;
    out.flush()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "ready");
    let server = tokio::spawn(http_server::serve(runtime, listener));
    tokio::select! {
        result = server => { result??; }
        _ = shutdown_signal() => { tracing::info!("shutting down"); }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

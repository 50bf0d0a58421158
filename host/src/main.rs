//! `twinlattice`: the digital-twin registry and I4.0 broker as WebAssembly
//! components, run in an embedded wasmtime host.

mod bindings;
mod bridges;
mod capabilities;
mod commands;
mod admin;
mod admin_auth;
mod http_server;
mod runtime;
mod settings;

use clap::{Args, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "twinlattice", version, about, long_about = "twinlattice runs its WebAssembly components \
(the AAS registry, its HTTP gateway and the schema validator) in an embedded wasmtime host.\n\n\
Settings come from flags, then environment variables, then the --config file (NAME=value lines using \
the same variable names), in that order.")]
struct Cli {
    /// A `.env`-style file of NAME=value settings (same names as the environment variables).
    #[arg(long, global = true, env = "TWINLATTICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive like `twinlattice=debug`.
    #[arg(long, global = true, env = "TWINLATTICE_LOG", default_value = "info")]
    log_level: String,

    /// Log format on stderr.
    #[arg(long, global = true, env = "TWINLATTICE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded host with every component and serve the AAS registry.
    Serve(ServeArgs),
    /// Validate a JSON document with the validator component.
    Validate(ValidateArgs),
    /// Compile the components into the compiled-code cache, so the first
    /// `serve` starts without compiling (setup runs this).
    Compile(HostArgs),
    /// Twin API accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The Trusted Twin tutorial's public demo data.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Manage the routing policy of a running host.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Swap the routing policy of a running host, without a restart and
    /// without losing or repeating a message. Not kept across restarts (use
    /// `serve --policy` for that).
    Set(commands::policy::SetArgs),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account with its Super Admin role, user and User Secret (as
    /// the Trusted Twin self-care panel does) and print
    /// {"account","user","role","secret"}. The secret is shown only this
    /// once; the store keeps its hash. Targets: a running host's admin
    /// endpoint (--admin, the default), a stopped host's data (--data-dir),
    /// or the twins component on a wasmCloud lattice (--lattice NATS_URL).
    Create(commands::account::CreateArgs),
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Seed the tutorial's public weather data: a demo account whose public
    /// Twin holds a `meters` entry and hourly temperatures (with history) of
    /// six Gdańsk stations, all visibility "true", plus a public Identity.
    /// The temperatures are GENERATED (a daily cycle), not measured: no
    /// package ships the tutorial's open data. Idempotent. Prints
    /// {"account","twin","identity","meters"}. Targets as for `account
    /// create`: --admin (the default), --data-dir or --lattice NATS_URL.
    Seed(commands::account::SeedArgs),
}

/// Where the host finds its components and keeps its data.
#[derive(Args, Clone)]
pub struct HostArgs {
    /// Directory of the .wasm components to load (all of them are loaded and linked).
    #[arg(long, env = "TWINLATTICE_COMPONENTS_DIR", value_name = "DIR", default_value_os_t = settings::default_components_dir())]
    components_dir: PathBuf,

    /// Directory for compiled-code cache files (safe to delete).
    #[arg(long, env = "TWINLATTICE_CACHE_DIR", value_name = "DIR", default_value_os_t = settings::default_cache_dir())]
    cache_dir: PathBuf,

    /// Routing policy of the I4.0 broker at start: `preferred`, `failover`
    /// (from the components directory's `policies/`), or a path to a .wasm
    /// exporting twinlattice:routing/policy. `twinlattice policy set` swaps
    /// it while running.
    #[arg(long, env = "TWINLATTICE_POLICY", default_value = "preferred")]
    policy: String,
}

impl HostArgs {
    /// Options for a command that runs the components in-process without
    /// serving anything (account creation, validation).
    fn offline_runtime(&self, data_dir: PathBuf, fsync: bool) -> runtime::RuntimeOptions {
        runtime::RuntimeOptions {
            components_dir: self.components_dir.clone(),
            data_dir,
            cache_dir: self.cache_dir.clone(),
            fsync,
            outbound: Default::default(),
            extra_components: vec![runtime::policy_file(&self.components_dir, &self.policy)],
            config: Vec::new(),
            http_routes: settings::DEFAULT_HTTP_ROUTES.to_string(),
            http_entry: runtime::http_pool::EntryKind::Typed,
            // Offline commands (account creation, demo seeding, validation)
            // run trusted work of their own: a generous bound only.
            call_deadline: std::time::Duration::from_secs(600),
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    runtime: HostArgs,

    /// Directory where the registry keeps its data (created if missing).
    #[arg(long, env = "TWINLATTICE_DATA_DIR", value_name = "DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Address the HTTP face binds to (the RIC's name for it).
    #[arg(long, env = "LIA_AAS_RESTAPI_HOST_EXTERN", default_value = "127.0.0.1")]
    host: String,

    /// HTTP port of the registry, gateway and I4.0 inbox; 0 picks a free one.
    #[arg(long, env = "LIA_AAS_RESTAPI_PORT_INTERN", default_value_t = 9021)]
    port: u16,

    /// Flush each write to disk before acknowledging it. `false` is for bulk
    /// loads and benchmarks only: a power loss may then lose the latest writes.
    #[arg(long, env = "TWINLATTICE_FSYNC", default_value_t = true, action = clap::ArgAction::Set)]
    fsync: bool,

    /// Which HTTP component serves which paths, by first path segment:
    /// `component:segment,segment;…`. The HTTP component not named here (the
    /// gateway) serves the rest.
    #[arg(long, env = "TWINLATTICE_HTTP_ROUTES", default_value = settings::DEFAULT_HTTP_ROUTES)]
    http_routes: String,

    /// How the host enters HTTP components: `typed` calls
    /// `twinlattice:http-face/handler` where a component exports it (one
    /// call per request), `wasi-http` always uses wasi:http as a lattice's
    /// http-server provider does. Both answer alike.
    #[arg(long, env = "TWINLATTICE_HTTP_ENTRY", value_enum, default_value = "typed")]
    http_entry: runtime::http_pool::EntryKind,

    /// How long one call into a component may run, waiting on its host
    /// calls included (a message's deliveries, a request's store writes),
    /// before it is stopped and answered 503 (CoAP 5.03, an I4.0 error).
    /// Bounds the CPU a single request can take.
    #[arg(long, env = "TWINLATTICE_CALL_DEADLINE_MS", default_value_t = 20_000)]
    call_deadline_ms: u64,

    /// A request's head must arrive within this many milliseconds, and an
    /// idle keep-alive connection is closed after it.
    #[arg(long, env = "TWINLATTICE_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    header_read_timeout_ms: u64,

    /// A request's body must arrive within this many milliseconds once its
    /// head is read; else 408. No admission slot is held while it arrives.
    #[arg(long, env = "TWINLATTICE_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    body_read_timeout_ms: u64,

    /// Open HTTP connections allowed from one client address; more are
    /// answered 503 and closed.
    #[arg(long, env = "TWINLATTICE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    max_connections_per_ip: usize,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "TWINLATTICE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,

    /// Address the CoAP inbox of the I4.0 broker binds to (UDP).
    #[arg(long, env = "LIA_AAS_COAP_HOST_EXTERN", default_value = "127.0.0.1")]
    coap_host: String,

    /// CoAP datagrams per second one source address may send (twice that
    /// in a burst); more are dropped before they are parsed.
    #[arg(long, env = "TWINLATTICE_COAP_RATE_PER_IP", default_value_t = 1_000)]
    coap_rate_per_ip: u32,

    /// CoAP port of the I4.0 broker's inbox; 0 picks a free one.
    #[arg(long, env = "LIA_AAS_COAP_PORT_INTERN", default_value_t = 5683)]
    coap_port: u16,

    /// MQTT broker the I4.0 broker's MQTT bridge connects to (inbox topics
    /// AASpillarbox and VWS_RIC). Unset: the host starts an embedded MQTT
    /// broker on --host:--mqtt-port (see --embedded-mqtt).
    #[arg(long, env = "LIA_AAS_MQTT_HOST")]
    mqtt_host: Option<String>,

    /// MQTT broker port (of the outside broker, or the one the embedded
    /// broker listens on; 0 picks a free one for it).
    #[arg(long, env = "LIA_AAS_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,

    /// Start an embedded MQTT broker when no --mqtt-host is given. `false`
    /// turns the MQTT bridge off instead.
    #[arg(long, env = "TWINLATTICE_EMBEDDED_MQTT", default_value_t = true, action = clap::ArgAction::Set)]
    embedded_mqtt: bool,

    /// Port of the admin endpoint (always bound to 127.0.0.1), used by
    /// `twinlattice policy set`; 0 picks a free one.
    #[arg(long, env = "TWINLATTICE_ADMIN_PORT", default_value_t = 9029)]
    admin_port: u16,

    /// How often AAS are expected to send HeartBeat (the RIC's clients: 5 s).
    /// The lease defaults to three intervals.
    #[arg(long, env = "TWINLATTICE_HEARTBEAT_INTERVAL_SECS", default_value_t = 5)]
    heartbeat_interval_secs: u64,

    /// Threads that run requests and components. 0 (the default) means
    /// three per CPU: a thread inside a Wasm call cannot hand its other
    /// ready requests to another thread until the call returns, nor run
    /// while the kernel has it descheduled, so spare threads keep every CPU
    /// busy (on 2 CPUs, GET by id measured best with 6 threads of 2, 4, 6, 8).
    #[arg(long, env = "TWINLATTICE_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,

    /// Heartbeat lease: an AAS whose last heartbeat (or registration) is
    /// older than this is offline (default: three heartbeat intervals).
    #[arg(long, env = "TWINLATTICE_HEARTBEAT_TTL_SECS")]
    heartbeat_ttl_secs: Option<u64>,

    #[command(flatten)]
    bridges: settings::BridgeArgs,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    runtime: HostArgs,

    /// Schema name, e.g. `aas-v3.0/shell-descriptor` (see --list).
    #[arg(long, required_unless_present = "list")]
    schema: Option<String>,

    /// List the schema names the validator knows, one per line.
    #[arg(long)]
    list: bool,

    /// The JSON document to validate (`-` for stdin).
    #[arg(required_unless_present = "list")]
    file: Option<PathBuf>,
}

fn init_logging(filter: &str, format: LogFormat) {
    // The embedded MQTT broker logs every client's connect and disconnect at
    // info and error; keep it to warnings unless asked for by name.
    let mut filter = if filter.contains("rumqttd") { filter.to_string() } else { format!("{filter},rumqttd=off") };
    // The NATS client of `--lattice` says "event: connected" at info.
    if !filter.contains("async_nats") {
        filter.push_str(",async_nats=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    if let Some(file) = settings::config_file_from_args() {
        if let Err(e) = settings::load_env_file(&file) {
            eprintln!("twinlattice: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    // `account` and `demo` may call a lattice over wRPC, whose NATS
    // transport can lose a reply on a multi-threaded runtime
    // (commands/lattice.rs); they do one call, so one thread is enough.
    let mut builder = match &cli.command {
        Command::Account(_) | Command::Demo(_) => tokio::runtime::Builder::new_current_thread(),
        Command::Serve(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(settings::worker_threads(args.worker_threads));
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twinlattice: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Validate(args) => commands::validate::run(args).await,
            Command::Account(AccountCommand::Create(args)) => commands::account::create(args).await,
            Command::Demo(DemoCommand::Seed(args)) => commands::account::seed(args).await,
            Command::Policy(PolicyCommand::Set(args)) => commands::policy::set(args).await,
            Command::Compile(args) => {
                for name in runtime::precompile(&args.components_dir, &args.cache_dir)? {
                    println!("compiled {name}");
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twinlattice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `regcheck` binary: parses arguments and wires the library together.

use clap::{Parser, Subcommand, ValueEnum};
use regcheck::check::{self, CheckInput, exit};
use regcheck::output;
use regcheck::probe_cmd::{self, ProbeArgs};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "regcheck",
    version,
    about = "Finds out why this machine or cluster cannot reach its container registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk the pull path of a registry from this machine's network and diagnose what breaks.
    Check(Box<CheckArgs>),
    /// Probe the registry from inside the cluster (run by probe Jobs): writes the compact
    /// report to the termination log and stdout
    Probe(Box<ProbeArgs>),
    /// Explain a pull error the container runtime reported (as `kubectl describe pod` shows
    /// it): the reason, the failing host and the fix
    Explain(ExplainArgs),
    /// Print the RegistryConnectivityCheck CRD as YAML
    Crdgen,
    /// Run the operator: reconcile RegistryConnectivityChecks into probe Jobs and status
    Controller(Box<regcheck::controller::cli::ControllerArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Login server, e.g. myregistry.azurecr.io or registry.example.com:5000
    registry: String,
    /// A data endpoint that blobs are redirected to (repeatable)
    #[arg(long = "data-endpoint", value_name = "HOST")]
    data_endpoints: Vec<String>,
    /// Azure region of a replica: derives <name>.<region>.data.azurecr.io (repeatable)
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Another registry host to probe too, e.g. mcr.microsoft.com (repeatable)
    #[arg(long = "also", value_name = "HOST")]
    also: Vec<String>,
    /// Also ask this nameserver on its own (repeatable)
    #[arg(long = "dns-server", value_name = "IP[:PORT]")]
    dns_servers: Vec<String>,
    /// The resolver configuration a client on this machine uses
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The hosts file consulted before DNS
    #[arg(long, value_name = "PATH", default_value = "/etc/hosts")]
    hosts_file: PathBuf,
    /// What the registry should resolve to: any, public or private (private endpoint)
    #[arg(long, value_name = "KIND", default_value = "any")]
    expect: String,
    /// Proxy for HTTPS (default: HTTPS_PROXY / https_proxy, with NO_PROXY)
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Ignore proxy settings and connect directly
    #[arg(long)]
    no_proxy: bool,
    /// Extra trusted CA certificates, PEM (repeatable)
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
    /// Pull the smallest blob of this image: REPO:TAG or REPO@sha256:...
    #[arg(long, value_name = "REPO:TAG")]
    image: Option<String>,
    /// User name for --image (password from standard input with --password-stdin)
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from standard input
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Docker config.json (or a .dockerconfigjson Secret's content) with credentials for --image
    #[arg(long, value_name = "PATH", conflicts_with = "username")]
    docker_config: Option<PathBuf>,
    /// Deadline of the whole check, e.g. 10s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    timeout: String,
    /// Refuse loopback targets too, as in-cluster probes do
    #[arg(long)]
    strict_targets: bool,
    /// containerd's registry config_path (e.g. /etc/containerd/certs.d): probe every mirror of
    /// its hosts.toml in containerd's order, with each host's CA, skip_verify and http://
    #[arg(long, value_name = "DIR")]
    containerd_config_dir: Option<PathBuf>,
    /// systemd unit or drop-in of the runtime (e.g. /etc/systemd/system/containerd.service.d/
    /// http-proxy.conf): use the proxy its Environment= lines give (repeatable)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["proxy", "no_proxy"])]
    runtime_proxy_from: Vec<PathBuf>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The message (quote it); read from standard input when absent
    message: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: OutputFormat,
}

/// Most of standard input `explain` reads (a long `kubectl describe pod` fits easily).
const EXPLAIN_MAX_INPUT: u64 = 1 << 20;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::BAD_INPUT } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // A bug must still end with the documented exit code for internal errors.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("regcheck: internal error: {info}");
        std::process::exit(exit::INTERNAL);
    }));
    // One crypto provider for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The controller sets up its own logging (level info, optional JSON).
    if !matches!(cli.command, Command::Controller(_)) {
        init_tracing();
    }
    let code = match cli.command {
        Command::Check(args) => run_check(*args),
        Command::Controller(args) => regcheck::controller::cli::main(*args),
        Command::Probe(args) => probe_cmd::execute(&args),
        Command::Explain(args) => run_explain(args),
        Command::Crdgen => match regcheck::crd::crdgen(&mut std::io::stdout().lock()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("regcheck: crdgen: {e}");
                exit::INTERNAL
            }
        },
    };
    std::process::exit(code);
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run_check(args: CheckArgs) -> i32 {
    let password = if args.password_stdin {
        let mut buf = String::new();
        if let Err(e) = std::io::stdin().take(64 * 1024).read_to_string(&mut buf) {
            eprintln!("regcheck: --password-stdin: cannot read standard input: {e}");
            return exit::BAD_INPUT;
        }
        Some(buf.trim_end_matches(['\r', '\n']).to_string())
    } else {
        None
    };
    let input = CheckInput {
        registry: args.registry,
        data_endpoints: args.data_endpoints,
        regions: args.regions,
        also: args.also,
        dns_servers: args.dns_servers,
        resolv_conf: args.resolv_conf,
        hosts_file: args.hosts_file,
        expect: args.expect,
        proxy: args.proxy,
        no_proxy: args.no_proxy,
        ca_files: args.ca_files,
        image: args.image,
        username: args.username,
        password,
        docker_config: args.docker_config,
        timeout: args.timeout,
        strict_targets: args.strict_targets,
        containerd_config_dir: args.containerd_config_dir,
        runtime_proxy_from: args.runtime_proxy_from,
    };
    let prepared = match check::prepare(&input, |k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("regcheck: {e}");
            return exit::BAD_INPUT;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("regcheck: cannot start the runtime: {e}");
            return exit::INTERNAL;
        }
    };
    let interactive = std::io::stderr().is_terminal() && matches!(args.output, OutputFormat::Table);
    let report = runtime.block_on(async {
        let spinner = interactive.then(|| tokio::spawn(spin(prepared.registry.clone())));
        let report = check::run(&prepared).await;
        if let Some(s) = spinner {
            s.abort();
            eprint!("\r\x1b[2K");
        }
        report
    });
    let text = match args.output {
        OutputFormat::Json => output::to_json(&report, true),
        OutputFormat::Table => output::render_table(&report, std::io::stdout().is_terminal()),
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        return exit::INTERNAL;
    }
    check::exit_code(&report)
}

fn run_explain(args: ExplainArgs) -> i32 {
    let text = if args.message.is_empty() {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin()
            .take(EXPLAIN_MAX_INPUT)
            .read_to_end(&mut buf)
        {
            eprintln!("regcheck: explain: cannot read standard input: {e}");
            return exit::BAD_INPUT;
        }
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        args.message.join(" ")
    };
    if text.trim().is_empty() {
        eprintln!(
            "regcheck: explain: MESSAGE is empty: give the pull error as an argument or on standard input"
        );
        return exit::BAD_INPUT;
    }
    let report = regcheck::pullerror::to_report(&regcheck::pullerror::classify(&text));
    let out = match args.output {
        OutputFormat::Json => output::to_json(&report, true),
        OutputFormat::Table => output::render_table(&report, std::io::stdout().is_terminal()),
    };
    if writeln!(std::io::stdout().lock(), "{out}").is_err() {
        return exit::INTERNAL;
    }
    check::exit_code(&report)
}

async fn spin(registry: String) {
    const FRAMES: [&str; 4] = ["|", "/", "-", "\\"];
    let started = std::time::Instant::now();
    for i in 0.. {
        eprint!(
            "\r{} checking {registry} … {:.1}s",
            FRAMES[i % FRAMES.len()],
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    }
}

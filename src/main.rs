//! The `regcheck` binary: parses arguments and wires the library together.

use clap::{Parser, Subcommand, ValueEnum};
use regcheck::cli::probe::{self, ProbeArgs};
use regcheck::cli::{self, TargetArgs, exit};
use regcheck::engine::check::{self, CheckInput};
use regcheck::engine::report;
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
    Controller(Box<regcheck::cli::controller::ControllerArgs>),
    /// The kubectl plugin (`kubectl regcheck ...` when linked as kubectl-regcheck): request a
    /// run and wait for it, show the checks
    Kubectl(regcheck::cli::kubectl::KubectlArgs),
}

/// The binary called as `kubectl-regcheck` (kubectl's plugin mechanism): `kubectl regcheck run
/// NAME` runs `kubectl-regcheck run NAME`.
#[derive(Parser)]
#[command(
    name = "kubectl regcheck",
    bin_name = "kubectl regcheck",
    version,
    about = "Run RegistryConnectivityChecks now and see their results"
)]
struct PluginCli {
    #[command(flatten)]
    args: regcheck::cli::kubectl::KubectlArgs,
}

/// Whether argv[0] names the kubectl plugin (`kubectl-regcheck`, also `.exe`).
fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|s| s == "kubectl-regcheck")
}

fn parse_error_exit(e: clap::Error, bad_input: i32) -> ! {
    let code = if e.use_stderr() { bad_input } else { 0 };
    let _ = e.print();
    std::process::exit(code);
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
    #[command(flatten)]
    target: TargetArgs,
    /// Also ask this nameserver on its own (repeatable)
    #[arg(long = "dns-server", value_name = "IP[:PORT]")]
    dns_servers: Vec<String>,
    /// User name for --image (password from standard input with --password-stdin)
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from standard input
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Docker config.json (or a .dockerconfigjson Secret's content) with credentials for --image
    #[arg(long, value_name = "PATH", conflicts_with = "username")]
    docker_config: Option<PathBuf>,
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
    if invoked_as_plugin() {
        let plugin = PluginCli::try_parse()
            .unwrap_or_else(|e| parse_error_exit(e, regcheck::cli::kubectl::exit::ERROR));
        std::panic::set_hook(Box::new(|info| {
            eprintln!("kubectl-regcheck: internal error: {info}");
            std::process::exit(regcheck::cli::kubectl::exit::ERROR);
        }));
        let _ = rustls::crypto::ring::default_provider().install_default();
        cli::init_tracing("warn", cli::LogFormat::Text);
        std::process::exit(regcheck::cli::kubectl::main(plugin.args));
    }
    let cli = Cli::try_parse().unwrap_or_else(|e| parse_error_exit(e, exit::BAD_INPUT));
    // A bug must still end with the documented exit code for internal errors.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("regcheck: internal error: {info}");
        std::process::exit(exit::INTERNAL);
    }));
    // One crypto provider for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The controller sets up its own logging (level info, optional JSON).
    if !matches!(cli.command, Command::Controller(_)) {
        cli::init_tracing("warn", cli::LogFormat::Text);
    }
    let code = match cli.command {
        Command::Check(args) => run_check(*args),
        Command::Controller(args) => regcheck::cli::controller::main(*args),
        Command::Probe(args) => probe::execute(&args),
        Command::Explain(args) => run_explain(args),
        Command::Kubectl(args) => regcheck::cli::kubectl::main(args),
        Command::Crdgen => match regcheck::operator::crd::crdgen(&mut std::io::stdout().lock()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("regcheck: crdgen: {e}");
                exit::INTERNAL
            }
        },
    };
    std::process::exit(code);
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
        dns_servers: args.dns_servers,
        username: args.username,
        password,
        docker_config: args.docker_config,
        strict_targets: args.strict_targets,
        containerd_config_dir: args.containerd_config_dir,
        runtime_proxy_from: args.runtime_proxy_from,
        ..args.target.check_input(args.registry)
    };
    let prepared = match check::prepare(&input, |k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("regcheck: {e}");
            return exit::BAD_INPUT;
        }
    };
    let runtime = match cli::runtime(Some(2)) {
        Ok(r) => r,
        Err(code) => return code,
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
        OutputFormat::Json => report::to_json(&report, true),
        OutputFormat::Table => report::render_table(&report, std::io::stdout().is_terminal()),
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        return exit::INTERNAL;
    }
    cli::exit_code(&report)
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
    let report =
        regcheck::engine::pullerror::to_report(&regcheck::engine::pullerror::classify(&text));
    let out = match args.output {
        OutputFormat::Json => report::to_json(&report, true),
        OutputFormat::Table => report::render_table(&report, std::io::stdout().is_terminal()),
    };
    if writeln!(std::io::stdout().lock(), "{out}").is_err() {
        return exit::INTERNAL;
    }
    cli::exit_code(&report)
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

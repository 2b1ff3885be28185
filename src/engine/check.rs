//! `regcheck check`: validate input, build the plan and the probe configuration, run, diagnose.
//!
//! Input handling is kept apart from the run so that bad input is refused before anything is
//! sent on the network (exit code 2).

use crate::engine::authparse::{Credentials, parse_docker_config};
use crate::engine::evidence::{Expect, Role};
use crate::engine::findings::Report;
use crate::engine::inputs::{self, Endpoint, InputError, InputFields, PlanInput};
use crate::engine::probe::{self, ProbeConfig, TargetPolicy, dns, net::Trust};
use crate::engine::proxy::ProxyConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Raw input of a check, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct CheckInput {
    pub registry: String,
    pub data_endpoints: Vec<String>,
    pub regions: Vec<String>,
    pub also: Vec<String>,
    pub dns_servers: Vec<String>,
    pub resolv_conf: PathBuf,
    pub hosts_file: PathBuf,
    pub expect: String,
    /// `--egress-ip`: expected egress addresses or CIDRs (repeatable, or comma lists).
    pub egress_ips: Vec<String>,
    /// `--proxy URL`: overrides the environment.
    pub proxy: Option<String>,
    /// `--no-proxy`: never use a proxy.
    pub no_proxy: bool,
    pub ca_files: Vec<PathBuf>,
    pub image: Option<String>,
    pub username: Option<String>,
    /// Read from standard input by the caller when `--password-stdin` is given.
    pub password: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub timeout: String,
    /// Apply the in-cluster target policy (no loopback).
    pub strict_targets: bool,
    /// `--containerd-config-dir`: containerd's `config_path` (hosts.toml per registry).
    pub containerd_config_dir: Option<PathBuf>,
    /// `--runtime-proxy-from`: systemd unit files/drop-ins whose `Environment=` gives the
    /// runtime's proxy.
    pub runtime_proxy_from: Vec<PathBuf>,
    /// `--egress-profile`: egress profiles whose hosts are probed (AKS, EKS, GKE, ...).
    pub egress_profiles: Vec<String>,
    /// `--egress-profile-param`: `name=value` parameters of the profiles.
    pub egress_params: Vec<String>,
    /// `--egress-host`: plain hosts the cluster must reach besides the registry.
    pub egress_hosts: Vec<String>,
}

/// The most a check may take.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A validated check, ready to run.
pub struct PreparedCheck {
    pub registry: String,
    pub endpoints: Vec<Endpoint>,
    pub config: ProbeConfig,
    /// What containerd would try for the registry (`--containerd-config-dir`).
    pub containerd: Option<crate::engine::hostsconfig::HostsResolution>,
    /// The egress hosts (`--egress-profile`, `--egress-host`); `None` when none were named.
    pub egress: Option<crate::engine::egress::EgressPlan>,
}

fn read_file(field: &str, path: &std::path::Path, max: u64) -> Result<String, InputError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| InputError::new(field, &shown, format!("cannot be read: {e}")))?;
    if meta.len() > max {
        return Err(InputError::new(
            field,
            &shown,
            format!("is larger than {max} bytes"),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(field, &shown, format!("cannot be read: {e}")))?;
    String::from_utf8(bytes).map_err(|_| InputError::new(field, &shown, "is not UTF-8 text"))
}

/// Validates everything and reads the local configuration files; sends nothing.
pub fn prepare(
    input: &CheckInput,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PreparedCheck, InputError> {
    let endpoints = inputs::plan(&PlanInput {
        registry: input.registry.clone(),
        data_endpoints: input.data_endpoints.clone(),
        regions: input.regions.clone(),
        also: input.also.clone(),
        fields: InputFields::FLAGS,
    })?;
    let login = endpoints
        .iter()
        .find(|e| e.role == Role::LoginServer)
        .ok_or_else(|| InputError::new("REGISTRY", &input.registry, "is required"))?;
    let egress = egress_plan(input)?;
    let registry = login.host.clone();
    let dns_servers = input
        .dns_servers
        .iter()
        .map(|s| inputs::parse_dns_server(s))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = inputs::parse_duration("--timeout", &input.timeout, MAX_TIMEOUT)?;
    let expect: Expect = input.expect.parse().map_err(|_| {
        InputError::new(
            "--expect",
            &input.expect,
            "is not one of any, public, private",
        )
    })?;
    let egress_ips = crate::engine::denial::parse_egress_ips("--egress-ip", &input.egress_ips)?;
    let resolv = dns::parse_resolv_conf(&read_file("--resolv-conf", &input.resolv_conf, 1 << 20)?);
    if resolv.nameservers.is_empty() && dns_servers.is_empty() {
        return Err(InputError::new(
            "--resolv-conf",
            &input.resolv_conf.display().to_string(),
            "has no usable nameserver line; give one with --dns-server",
        ));
    }
    // A missing hosts file is normal in minimal images.
    let hosts = match std::fs::metadata(&input.hosts_file) {
        Ok(_) => dns::parse_hosts(&read_file("--hosts-file", &input.hosts_file, 4 << 20)?),
        Err(_) => Default::default(),
    };
    let proxy = if !input.runtime_proxy_from.is_empty() {
        Some(runtime_proxy(input)?)
    } else if input.no_proxy {
        None
    } else if let Some(url) = &input.proxy {
        let no_proxy = env("NO_PROXY").or_else(|| env("no_proxy"));
        Some(
            ProxyConfig::from_env(|k| match k {
                "HTTPS_PROXY" => Some(url.clone()),
                "NO_PROXY" => no_proxy.clone(),
                _ => None,
            })
            .map_err(|mut e| {
                e.field = "--proxy".into();
                e
            })?,
        )
    } else {
        Some(ProxyConfig::from_env(&env)?)
    };
    let trust = Trust::load(&input.ca_files)?;
    let image = input
        .image
        .as_deref()
        .map(|i| inputs::parse_image("--image", i, (&registry, login.port)))
        .transpose()?;
    let credentials = credentials(
        input,
        &crate::engine::probe::host_header(&registry, login.port),
    )?;
    if credentials.is_some() && image.is_none() {
        return Err(InputError::new(
            "--username",
            input.username.as_deref().unwrap_or("(docker config)"),
            "credentials are only used with --image",
        ));
    }
    let containerd = match &input.containerd_config_dir {
        None => None,
        Some(dir) => {
            let shown = dir.display().to_string();
            if !dir.is_dir() {
                return Err(InputError::new(
                    "--containerd-config-dir",
                    &shown,
                    "is not a directory",
                ));
            }
            let name = crate::engine::probe::host_header(&registry, login.port);
            // containerd looks the registry up as written in image references: host[:port].
            Some(
                crate::engine::hostsconfig::load(dir, &name)
                    .map_err(|e| InputError::new("--containerd-config-dir", &shown, e))?,
            )
        }
    };
    Ok(PreparedCheck {
        containerd,
        egress,
        registry,
        endpoints,
        config: ProbeConfig {
            resolv,
            hosts,
            dns_servers,
            proxy,
            trust,
            policy: if input.strict_targets {
                TargetPolicy::in_cluster(vec![])
            } else {
                TargetPolicy::cli()
            },
            timeout,
            expect,
            egress_ips,
            image,
            credentials,
        },
    })
}

/// The egress plan of `--egress-profile`, `--egress-profile-param` and `--egress-host`.
fn egress_plan(
    input: &CheckInput,
) -> Result<Option<crate::engine::egress::EgressPlan>, InputError> {
    use crate::engine::egress::{self, EgressFields, EgressInput};
    let f = EgressFields::FLAGS;
    let params = input
        .egress_params
        .iter()
        .map(|p| egress::parse_param(f.params, p))
        .collect::<Result<Vec<_>, _>>()?;
    let e = EgressInput {
        profiles: input.egress_profiles.clone(),
        params,
        hosts: input.egress_hosts.clone(),
    };
    if e.is_empty() {
        return Ok(None);
    }
    egress::plan(&e, f).map(Some)
}

/// The proxy of the runtime's systemd unit: `Environment=` of the given files, in systemd's
/// order (by file name).
fn runtime_proxy(input: &CheckInput) -> Result<ProxyConfig, InputError> {
    let mut files = input.runtime_proxy_from.clone();
    crate::engine::dropin::sort_dropins(&mut files);
    let mut env = crate::engine::dropin::UnitEnv::default();
    for f in &files {
        let text = read_file("--runtime-proxy-from", f, 1 << 20)?;
        env.apply(&f.display().to_string(), &text);
    }
    for note in &env.ignored {
        tracing::warn!("--runtime-proxy-from: {note}");
    }
    ProxyConfig::from_env(|k| env.get(k).map(str::to_string)).map_err(|e| {
        InputError::new(
            "--runtime-proxy-from",
            &e.value,
            format!("{}: {}", e.field, e.problem),
        )
    })
}

fn credentials(input: &CheckInput, registry: &str) -> Result<Option<Credentials>, InputError> {
    match (&input.username, &input.password, &input.docker_config) {
        (Some(_), _, Some(_)) => Err(InputError::new(
            "--docker-config",
            &input
                .docker_config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "cannot be combined with --username",
        )),
        (Some(u), Some(p), None) => {
            if u.is_empty() {
                return Err(InputError::new("--username", u, "must not be empty"));
            }
            Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }))
        }
        (Some(u), None, None) => Err(InputError::new("--username", u, "needs --password-stdin")),
        (None, Some(_), _) => Err(InputError::new(
            "--password-stdin",
            "(hidden)",
            "needs --username",
        )),
        (None, None, Some(path)) => {
            let text = read_file("--docker-config", path, 1 << 20)?;
            let creds = parse_docker_config(text.as_bytes(), registry)?;
            if creds.is_none() {
                return Err(InputError::new(
                    "--docker-config",
                    &path.display().to_string(),
                    format!("has no entry for {registry}"),
                ));
            }
            Ok(creds)
        }
        (None, None, None) => Ok(None),
    }
}

/// Runs a prepared check and diagnoses it.
pub async fn run(check: &PreparedCheck) -> Report {
    let login_port = check
        .endpoints
        .iter()
        .find(|e| e.role == Role::LoginServer)
        .map(|e| e.port)
        .unwrap_or(inputs::HTTPS_PORT);
    // containerd's mirrors are probed beside the engine, each with its own budget.
    let walk = async {
        match &check.containerd {
            Some(res) => Some(
                crate::engine::mirrors::walk(res, (&check.registry, login_port), &check.config)
                    .await,
            ),
            None => None,
        }
    };
    let egress = async {
        match &check.egress {
            Some(plan) => Some(probe::egress::run(plan, &check.config).await),
            None => None,
        }
    };
    let (mut evidence, hosts, egress) = tokio::join!(
        probe::run(&check.registry, &check.endpoints, &check.config),
        walk,
        egress
    );
    evidence.egress = egress;
    if let (Some(res), Some(hosts)) = (&check.containerd, hosts) {
        evidence.containerd = Some(crate::engine::mirrors::summarise(res, hosts, &evidence));
    }
    crate::engine::diagnosis::report(evidence)
}

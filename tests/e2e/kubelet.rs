//! The kubelet context on the shared test cluster: pull canaries whose pulls containerd makes
//! for real, with the registry host configuration it reads from `$DIR/certs.d` on every pull
//! (see `../shared/cluster/README.md`, "Image pulls by the kubelet"). containerd sends a pull of
//! any *name* to a dead proxy, so each scenario maps its registry name to a lab server by IP
//! with a `hosts.toml` (a mirror), or pulls by IP:port directly.
//!
//! The lab servers (tests/e2e/servers.py) serve, besides the registries by name on :443:
//! MIRROR_PORT (blobs served directly), AUTH_PORT (the same behind Basic authentication),
//! REDIR_PORT (blobs redirected to DEAD_PORT, where nothing listens) and HANG_MIRROR_PORT
//! (never answers).

use super::*;

/// As in tests/e2e/servers.py.
const MIRROR: &str = "e2emirror.azurecr.io";
/// No DNS record anywhere (the lab's dnsmasq answers NXDOMAIN): reachable only through a
/// mirror of containerd's hosts.toml.
const ONLY_MIRRORED: &str = "e2eonlymirror.azurecr.io";
const REDIR: &str = "e2eredir.azurecr.io";
const MIRROR_PORT: u16 = 5443;
const AUTH_PORT: u16 = 5444;
const REDIR_PORT: u16 = 5445;
const HANG_MIRROR_PORT: u16 = 5446;
const DEAD_PORT: u16 = 31509;
const AUTH_USER: &str = "e2e-puller";
const AUTH_PASSWORD: &str = "e2e-pull-secret-1";
/// Pulled only through e2eredir's redirect (servers.py), so containerd never has its blobs.
const REDIRECTED_IMAGE: &str = "e2e/redirected:1.0";

/// `$DIR/certs.d/<host>/hosts.toml` for as long as the value lives (containerd reads it on every
/// pull; no restart).
pub struct HostsToml {
    dir: PathBuf,
}

impl HostsToml {
    /// `$DIR/certs.d/<host>`, created.
    fn dir(host: &str) -> PathBuf {
        let dir = cluster_dir().join("certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir
    }

    fn write(host: &str, text: &str) -> HostsToml {
        let dir = HostsToml::dir(host);
        let file = dir.join("hosts.toml");
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        HostsToml { dir }
    }

    /// Pulls of `host` go to the lab server at `lab_ip:port` (trusting the lab CA) and, as
    /// containerd does, fall back to `host` itself (the dead proxy) when the mirror fails. The
    /// CA file sits next to the hosts.toml, as on real nodes, so that node probes (which mount
    /// the certs.d directory read-only) read the same file containerd does.
    pub fn mirror(c: &Cluster, host: &str, port: u16) -> HostsToml {
        let dir = HostsToml::dir(host);
        let ca = dir.join("ca.pem");
        std::fs::copy(lab_ca(c), &ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
        HostsToml::write(
            host,
            &format!(
                "server = \"https://{host}\"\n\n[host.\"https://{}:{port}\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                c.lab_ip,
                ca.display()
            ),
        )
    }

    /// containerd trusts the lab CA for `host` (an IP:port registry) and nothing else changes.
    fn trust_lab_ca(c: &Cluster, host: &str) -> HostsToml {
        let ca = lab_ca(c);
        HostsToml::write(
            host,
            &format!("server = \"https://{host}\"\n\n[host.\"https://{host}\"]\n  ca = \"{ca}\"\n"),
        )
    }
}

impl Drop for HostsToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab_ca(c: &Cluster) -> String {
    c.state.join("pki/ca.pem").display().to_string()
}

fn kubelet_on(spec: Value) -> Value {
    let mut s = spec;
    let contexts = s["contexts"].take();
    let mut contexts = if contexts.is_null() {
        json!({})
    } else {
        contexts
    };
    contexts["kubelet"] = json!({"enabled": true});
    s["contexts"] = contexts;
    s
}

/// Waits until the check's kubelet context has a verdict (`ImagePullable` not Unknown).
fn wait_pullable(ns: &Ns, name: &str) -> Value {
    ns.wait_check(name, "ImagePullable reported", RUN_WAIT, |v| {
        condition(v, "ImagePullable").is_some_and(|c| c["status"] != "Unknown")
    })
}

fn result<'v>(v: &'v Value, context: &str) -> &'v Value {
    v["status"]["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["context"] == context))
        .unwrap_or_else(|| panic!("no {context} result: {:#}", v["status"]))
}

/// The check's pull canaries that are not being deleted.
fn live_canaries(c: &Cluster, ns: &str, uid: &str) -> Option<Vec<Value>> {
    let pods = c
        .get_json(&[
            "pods",
            "-n",
            ns,
            "-l",
            &format!("{LABEL_CHECK_UID}={uid},{LABEL_CONTEXT}=kubelet"),
        ])
        .ok()?;
    Some(
        pods["items"]
            .as_array()?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect(),
    )
}

pub fn wait_no_canary(c: &Cluster, ns: &str, uid: &str, limit: Duration) {
    wait_for("no pull canary left", limit, || {
        live_canaries(c, ns, uid)
            .filter(|p| p.is_empty())
            .map(|_| ())
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}", live_canaries(c, ns, uid)));
}

pub fn kubelet_pull_through_a_hosts_toml_mirror_is_healthy() {
    let c = &fixture().cluster;
    let _g = shared();
    let _hosts = HostsToml::mirror(c, MIRROR, MIRROR_PORT);
    let ns = Ns::fresh(c, "kubelet-mirror");
    ns.check(
        "mirror",
        kubelet_on(json!({"registry": MIRROR, "image": LAB_IMAGE,
                          "contexts": {"pod": {"enabled": false}}})),
    );
    let v = wait_pullable(&ns, "mirror");
    let st = &v["status"];
    let pullable = condition(&v, "ImagePullable").unwrap();
    assert_eq!(pullable["status"], "True", "{st:#}");
    let kubelet = result(&v, "Kubelet");
    assert_eq!(kubelet["verdict"], "Healthy", "{st:#}");
    assert_eq!(result(&v, "Node")["verdict"], "Healthy", "{st:#}");
    assert_eq!(
        condition(&v, "ContextsConsistent").unwrap()["status"],
        "True",
        "node probe and kubelet agree: {st:#}"
    );
    assert_eq!(ready(&v), Some("True"), "{st:#}");
    // The pull really happened: the kubelet's own Event on a canary says so.
    let events = c
        .get_json(&[
            "events",
            "-n",
            &ns.name,
            "--field-selector",
            "reason=Pulled",
        ])
        .unwrap();
    assert!(
        events["items"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains(MIRROR))),
        "a Pulled event of the kubelet for {MIRROR}: {events:#}"
    );
    wait_no_canary(c, &ns.name, &uid(&v), Duration::from_secs(30));
}

pub fn kubelet_pull_of_blobs_redirected_to_a_blocked_data_endpoint() {
    let c = &fixture().cluster;
    let _g = shared();
    let _hosts = HostsToml::mirror(c, REDIR, REDIR_PORT);
    let ns = Ns::fresh(c, "kubelet-redirect");
    ns.check(
        "redir",
        kubelet_on(json!({"registry": REDIR, "image": REDIRECTED_IMAGE,
                          "contexts": {"pod": {"enabled": false}}})),
    );
    let v = wait_pullable(&ns, "redir");
    let st = &v["status"];
    let dead = format!("{}:{DEAD_PORT}", c.lab_ip);
    // The kubelet: the manifest came through the mirror, the blob's redirect was refused.
    let pullable = condition(&v, "ImagePullable").unwrap();
    assert_eq!(pullable["status"], "False", "{st:#}");
    let kubelet = result(&v, "Kubelet");
    assert_eq!(kubelet["reason"], "DataEndpointBlocked", "{st:#}");
    let message = kubelet["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&dead) && message.contains("refused") && message.contains("runtime:"),
        "names the data endpoint and keeps the runtime's words: {st:#}"
    );
    // The node probe followed the same redirect and found the same.
    let node = result(&v, "Node");
    assert_eq!(node["reason"], "DataEndpointBlocked", "{st:#}");
    assert!(
        node["message"].as_str().unwrap_or("").contains(&dead),
        "{st:#}"
    );
    // Both see the same problem: nothing differs between the contexts.
    assert_eq!(
        condition(&v, "ContextsConsistent").unwrap()["status"],
        "True",
        "{st:#}"
    );
    assert_eq!(ready(&v), Some("False"), "{st:#}");
    assert_eq!(reason(&v), Some("DataEndpointBlocked"), "{st:#}");
    wait_no_canary(c, &ns.name, &uid(&v), Duration::from_secs(30));
}

pub fn kubelet_pull_needs_credentials_then_pulls_with_the_secret() {
    let c = &fixture().cluster;
    let _g = shared();
    let registry = format!("{}:{AUTH_PORT}", c.lab_ip);
    let _hosts = HostsToml::trust_lab_ca(c, &registry);
    let ns = Ns::fresh(c, "kubelet-credentials");
    // The kubelet and the pod probe, both with the workload's view of credentials.
    let spec = kubelet_on(json!({"registry": registry, "image": LAB_IMAGE,
                                 "contexts": {"node": {"enabled": false}}}));
    ns.check("auth", spec.clone());
    let v = wait_pullable(&ns, "auth");
    let st = &v["status"];
    let kubelet = result(&v, "Kubelet");
    assert_eq!(
        condition(&v, "ImagePullable").unwrap()["status"],
        "False",
        "{st:#}"
    );
    assert_eq!(kubelet["reason"], "AuthenticationFailed", "{st:#}");
    assert!(
        kubelet["message"].as_str().unwrap_or("").contains("401"),
        "{st:#}"
    );
    assert_eq!(
        result(&v, "Pod")["reason"],
        "AuthenticationFailed",
        "{st:#}"
    );
    let first_run = last_run(&v).unwrap().to_string();

    // The pull secret, then the check names it: the next run pulls.
    c.k(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        "-n",
        &ns.name,
        &format!("--docker-server={registry}"),
        &format!("--docker-username={AUTH_USER}"),
        &format!("--docker-password={AUTH_PASSWORD}"),
    ])
    .unwrap();
    let mut spec = spec;
    spec["credentialsSecretRef"] = json!({"name": "pull"});
    ns.check("auth", spec);
    let v = ns.wait_check("auth", "a run with the credentials", RUN_WAIT, |v| {
        last_run(v).is_some_and(|r| r != first_run)
            && condition(v, "ImagePullable").is_some_and(|c| c["status"] != "Unknown")
    });
    let st = &v["status"];
    assert_eq!(
        condition(&v, "ImagePullable").unwrap()["status"],
        "True",
        "{st:#}"
    );
    assert_eq!(result(&v, "Kubelet")["verdict"], "Healthy", "{st:#}");
    assert_eq!(result(&v, "Pod")["verdict"], "Healthy", "{st:#}");
    assert_eq!(ready(&v), Some("True"), "{st:#}");
    wait_no_canary(c, &ns.name, &uid(&v), Duration::from_secs(30));
}

pub fn kubelet_containerd_not_trusting_the_lab_ca_the_probe_trusts() {
    let c = &fixture().cluster;
    let _g = shared();
    // No hosts.toml for this host: containerd verifies with the host's roots only.
    let registry = format!("{}:{MIRROR_PORT}", c.lab_ip);
    let ns = Ns::fresh(c, "kubelet-untrusted");
    ns.check(
        "tls",
        kubelet_on(json!({"registry": registry, "image": LAB_IMAGE,
                          "contexts": {"pod": {"enabled": false}}})),
    );
    let v = wait_pullable(&ns, "tls");
    let st = &v["status"];
    assert_eq!(result(&v, "Node")["verdict"], "Healthy", "{st:#}");
    let kubelet = result(&v, "Kubelet");
    assert_eq!(kubelet["reason"], "KubeletTLSUntrusted", "{st:#}");
    let contexts = condition(&v, "ContextsConsistent").unwrap();
    assert_eq!(contexts["status"], "False", "{st:#}");
    assert_eq!(contexts["reason"], "KubeletTLSUntrusted", "{st:#}");
    assert!(
        contexts["message"]
            .as_str()
            .unwrap_or("")
            .contains("x509: certificate signed by unknown authority"),
        "containerd's own words: {st:#}"
    );
    assert_eq!(
        condition(&v, "ImagePullable").unwrap()["reason"],
        "KubeletTLSUntrusted",
        "{st:#}"
    );
    wait_no_canary(c, &ns.name, &uid(&v), Duration::from_secs(30));
}

/// A canary still pulling (the registry never answers) when its check is deleted.
pub fn kubelet_canaries_of_a_deleted_check_are_removed() {
    let c = &fixture().cluster;
    let _g = shared();
    let _hosts = HostsToml::mirror(c, HANG, HANG_MIRROR_PORT);
    let ns = Ns::fresh(c, "kubelet-delete");
    let check = ns.check(
        "hang",
        kubelet_on(
            json!({"registry": HANG, "image": LAB_IMAGE, "timeoutSeconds": 60,
                          "interval": "10m", "contexts": {"pod": {"enabled": false}}}),
        ),
    );
    let uid = uid(&check);
    wait_for("a canary pulling", RUN_WAIT, || {
        let events = c
            .get_json(&[
                "events",
                "-n",
                &ns.name,
                "--field-selector",
                "reason=Pulling",
            ])
            .ok()?;
        let pulling = events["items"]
            .as_array()?
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains(HANG)));
        (pulling && live_canaries(c, &ns.name, &uid)?.len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    c.k(&["delete", "rcc", "-n", &ns.name, "hang", "--wait=false"])
        .unwrap();
    wait_for("the check to be gone", Duration::from_secs(60), || {
        ns.get("hang").is_none().then_some(())
    })
    .unwrap();
    wait_no_canary(c, &ns.name, &uid, Duration::from_secs(60));
}

/// Issue 14 on the cluster: the node probe reads containerd's registry host configuration
/// (the test cluster's `$DIR/certs.d`, mounted read-only) and walks it as containerd does. A
/// registry whose name does not resolve, reachable only through a hosts.toml mirror: the
/// kubelet pulls through the mirror; the node probe finds the mirror working and says the
/// upstream's failure does not fail pulls (Degraded, a Warning), so the contexts agree.
/// Without the mounted configuration the node probe would report DNSNameNotFound as an Error.
pub fn kubelet_and_node_probe_agree_through_a_mirror_the_upstream_lacks() {
    let c = &fixture().cluster;
    let _g = shared();
    let _hosts = HostsToml::mirror(c, ONLY_MIRRORED, MIRROR_PORT);
    let ns = Ns::fresh(c, "kubelet-only-mirror");
    ns.check(
        "only",
        kubelet_on(json!({"registry": ONLY_MIRRORED, "image": LAB_IMAGE,
                          "contexts": {"pod": {"enabled": false}}})),
    );
    let v = wait_pullable(&ns, "only");
    let st = &v["status"];
    assert_eq!(
        condition(&v, "ImagePullable").unwrap()["status"],
        "True",
        "the kubelet pulled through the mirror: {st:#}"
    );
    let node = result(&v, "Node");
    assert_eq!(node["verdict"], "Degraded", "{st:#}");
    assert_eq!(node["reason"], "DNSNameNotFound", "{st:#}");
    assert!(
        node["message"]
            .as_str()
            .unwrap_or("")
            .contains("containerd pulls through its mirror"),
        "{st:#}"
    );
    assert_eq!(
        condition(&v, "ContextsConsistent").unwrap()["status"],
        "True",
        "{st:#}"
    );
    // Ready follows the worst report: Degraded (the upstream's name does not resolve, a
    // risk once the mirror fails) is not Ready, and the message says pulls work through the
    // mirror.
    let ready_cond = condition(&v, "Ready").unwrap();
    assert_eq!(ready_cond["reason"], "DNSNameNotFound", "{st:#}");
    assert!(
        ready_cond["message"]
            .as_str()
            .unwrap_or("")
            .contains("containerd pulls through its mirror"),
        "{st:#}"
    );
    wait_no_canary(c, &ns.name, &uid(&v), Duration::from_secs(30));
}

/// Issue 14 on the cluster: Node objects no kubelet backs (Ready when created, tainted so that
/// nothing else is scheduled there, removed at the end): a Windows node, a virtual-kubelet
/// node (ACI virtual nodes) and a Linux node of a platform the probe image lacks (s390x). A
/// check with the node strategy AllNodes lists them in `status.skippedNodes` with the reason,
/// probes the real node, and does not count them as failures.
pub fn mixed_cluster_nodes_the_probe_cannot_run_on_are_skipped_not_failed() {
    let c = &fixture().cluster;
    let _g = shared();
    const LABEL: &str = "regcheck-e2e/fake-node";
    struct FakeNodes<'a>(&'a Cluster);
    impl Drop for FakeNodes<'_> {
        fn drop(&mut self) {
            let _ = self.0.k(&[
                "delete",
                "nodes",
                "-l",
                &format!("{LABEL}=true"),
                "--wait=false",
            ]);
        }
    }
    let _cleanup = FakeNodes(c);
    let node = |name: &str, os: &str, arch: &str, extra: Value, taints: Value| {
        let mut labels = json!({
            "kubernetes.io/os": os, "kubernetes.io/arch": arch,
            "kubernetes.io/hostname": name, LABEL: "true",
        });
        for (k, v) in extra.as_object().unwrap() {
            labels[k] = v.clone();
        }
        let mut t = vec![json!({"key": LABEL, "value": "true", "effect": "NoSchedule"})];
        t.extend(taints.as_array().cloned().unwrap_or_default());
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": t},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "e2e fake node"}],
                "nodeInfo": {"architecture": arch, "operatingSystem": os,
                             "kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://1.7.0",
                             "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                             "machineID": "", "systemUUID": "", "bootID": ""},
            },
        })
    };
    for n in [
        node("e2e-fake-windows", "windows", "amd64", json!({}), json!([])),
        node(
            "e2e-fake-virtual-kubelet",
            "linux",
            "amd64",
            json!({"type": "virtual-kubelet"}),
            json!([{"key": "virtual-kubelet.io/provider", "value": "azure", "effect": "NoSchedule"}]),
        ),
        node("e2e-fake-s390x", "linux", "s390x", json!({}), json!([])),
    ] {
        c.apply(&n).unwrap();
    }
    let ns = Ns::fresh(c, "mixed-nodes");
    ns.check(
        "mixed",
        json!({"registry": LOGIN, "interval": "10m",
               "contexts": {"pod": {"enabled": false},
                            "node": {"strategy": "AllNodes",
                                     "tolerations": [{"operator": "Exists"}]}}}),
    );
    let v = ns.wait_check("mixed", "the first run", RUN_WAIT, |v| {
        last_run(v).is_some() && ready(v).is_some()
    });
    let st = &v["status"];
    let skipped: BTreeMap<&str, (&str, &str)> = st["skippedNodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["node"].as_str()?,
                (s["reason"].as_str()?, s["message"].as_str().unwrap_or("")),
            ))
        })
        .collect();
    assert_eq!(
        skipped.get("e2e-fake-windows").map(|s| s.0),
        Some("NotLinux"),
        "{st:#}"
    );
    assert_eq!(
        skipped.get("e2e-fake-virtual-kubelet").map(|s| s.0),
        Some("VirtualKubelet"),
        "{st:#}"
    );
    let s390x = skipped.get("e2e-fake-s390x").expect("s390x skipped");
    assert_eq!(s390x.0, "PlatformNotInProbeImage", "{st:#}");
    assert!(s390x.1.contains("s390x"), "names the platform: {st:#}");
    assert!(!skipped.contains_key("localhost"), "{st:#}");
    // The real node was probed; the skipped ones are no failure.
    let results = st["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .any(|r| r["node"] == "localhost" && r["verdict"] == "Healthy"),
        "{st:#}"
    );
    assert!(
        results.iter().all(|r| r["node"] == "localhost"),
        "only the real node ran a probe: {st:#}"
    );
    assert_eq!(ready(&v), Some("True"), "{st:#}");
}

//! The Helm chart installed for real, through Helm v4's own SDK (`tests/e2e/helm_release.py`,
//! run with the packaging venv's python): install, a check reconciled by the release's
//! operator, `helm test`, upgrades (one the cluster cannot take), history, rollback, uninstall,
//! and values the controller would refuse at start refused by the schema before anything is
//! applied.
//!
//! On the test cluster (Kubernetes 1.20) the chart goes in without its `crds/` (`--skip-crds`):
//! Helm v4 applies `crds/` with server-side apply, and a 1.20 API server refuses that for a CRD
//! carrying `x-kubernetes-validations` ("field not declared in schema"). The CRD is applied with
//! `kubectl apply --validate=false -k crds/` first, as the README's kubectl path does; newer
//! clusters take the chart as it is. The values this cluster needs (image loaded into
//! containerd, host network, API server on 127.0.0.1) are `tests/e2e/helm-values.yaml`.

use super::*;

/// The release name and namespace of the README.
pub const RELEASE: &str = "regcheck";
pub const CHART: &str = "charts/regcheck";
pub const VALUES: &str = "tests/e2e/helm-values.yaml";
/// The metrics port of helm-values.yaml (as the overlay's) and the one the upgrade moves to.
const PORT: u16 = 18080;
const UPGRADED_PORT: u16 = 18081;

/// `helm_release.py ARGS -n regcheck-system` from the repository root: its JSON, or its error.
pub fn helm(c: &Cluster, args: &[&str]) -> Result<Value, String> {
    let python = venv::python(Path::new(ROOT))?;
    let out = Command::new(&python)
        .arg(Path::new(ROOT).join("tests/e2e/helm_release.py"))
        .args(args)
        .args(["-n", OPERATOR_NS])
        .current_dir(ROOT)
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "helm {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("helm {args:?} printed {text:?}: {e}"))
}

fn readyz_on(port: u16) -> Option<()> {
    http_get_at(&format!("127.0.0.1:{port}"), "/readyz")
        .ok()
        .filter(|(s, _)| *s == 200)
        .map(|_| ())
}

fn controller_args(c: &Cluster) -> Vec<String> {
    let d = c
        .get_json(&["deployment", "-n", OPERATOR_NS, "regcheck-controller"])
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Objects of the release still in the cluster (instance label), by kind/name.
fn release_objects(c: &Cluster) -> Vec<String> {
    let sel = format!("app.kubernetes.io/instance={RELEASE}");
    let mut left = Vec::new();
    for (kinds, ns) in [
        (
            "deployments,services,serviceaccounts,roles,rolebindings,pods,jobs",
            Some(OPERATOR_NS),
        ),
        ("clusterroles,clusterrolebindings", None),
    ] {
        let mut args = vec![kinds, "-l", sel.as_str()];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let v = c.get_json(&args).unwrap();
        for o in v["items"].as_array().into_iter().flatten() {
            left.push(format!("{}/{}", o["kind"], o["metadata"]["name"]));
        }
    }
    left
}

/// The pod of the chart's test hook (templates/tests/registry-check.yaml).
const TEST_POD: &str = "regcheck-test-registry";

/// `helm test` passes at `revision`: the hook's pod reports e2ereg healthy, and is deleted
/// after it succeeded (hook-succeeded), as is any failed pod of an earlier test
/// (before-hook-creation).
fn helm_test_passes(c: &Cluster, revision: u64) {
    let t = helm(c, &["test", RELEASE]).unwrap_or_else(|e| panic!("helm test: {e}"));
    assert_eq!(t["revision"], revision, "{t}");
    assert_eq!(t["status"], "deployed", "{t}");
    let logs = t["logs"].as_str().unwrap_or("");
    assert!(
        logs.contains(&format!("Registry {LOGIN}: Healthy")),
        "helm test logs: {t}"
    );
    let gone = c.k(&["get", "pod", "-n", OPERATOR_NS, TEST_POD]);
    assert!(
        gone.as_ref().is_err_and(|e| e.contains("NotFound")),
        "the test pod after a passing test: {gone:?}"
    );
    say(&format!("helm: helm test passed at revision {revision}"));
}

fn history(c: &Cluster) -> Vec<(u64, String)> {
    helm(c, &["history", RELEASE])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Uninstalls the release, whatever happened (nothing when it is gone already).
pub struct Uninstall<'a>(pub &'a Cluster);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        if let Ok(out) = helm(self.0, &["uninstall", RELEASE]) {
            say(&format!("helm: release removed after a failure: {out}"));
        }
    }
}

pub fn helm_chart_lifecycle_on_the_test_cluster() {
    let c = &fixture().cluster;
    // Exclusive: the harness's operator makes way for the release (same names), and comes back
    // through the Reinstall guard whatever happens.
    let _g = fixture()
        .controller_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let reinstall = Reinstall(c);
    // Dropped first: a release left by a failure goes before the operator is restored.
    let uninstall = Uninstall(c);
    let overlay = c.overlay.to_str().unwrap();
    c.k(&[
        "delete",
        "-k",
        overlay,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=180s",
    ])
    .unwrap();
    // Objects left by an earlier, interrupted run of this test.
    let _ = helm(c, &["uninstall", RELEASE]);
    c.k(&[
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "--ignore-not-found",
    ])
    .unwrap();
    wait_for(
        "the operator namespace to be gone",
        Duration::from_secs(180),
        || {
            c.k(&["get", "namespace", OPERATOR_NS])
                .err()
                .filter(|e| e.contains("NotFound"))
        },
    )
    .unwrap();

    // As documented: the namespace labelled for the privileged level, the CRD with kubectl.
    say("helm: namespace and CRD (kubectl; Helm v4 cannot apply crds/ on Kubernetes 1.20)");
    c.k(&["create", "namespace", OPERATOR_NS]).unwrap();
    c.k(&[
        "label",
        "namespace",
        OPERATOR_NS,
        "pod-security.kubernetes.io/enforce=privileged",
    ])
    .unwrap();
    c.k(&["apply", "--validate=false", "-k", &format!("{ROOT}/crds")])
        .unwrap();
    let install = |extra: &[&str]| {
        let mut a = vec!["install", RELEASE, CHART, "--skip-crds", "-f", VALUES];
        a.extend_from_slice(extra);
        helm(c, &a)
    };
    let upgrade = |extra: &[&str]| {
        let mut a = vec!["upgrade", RELEASE, CHART, "--skip-crds", "-f", VALUES];
        a.extend_from_slice(extra);
        helm(c, &a)
    };

    // Values the controller refuses at start: refused by the schema, naming the field, with
    // nothing applied and no release recorded.
    for (set, field) in [
        (
            "controller.allowedRegistries={*.azurecr}",
            "allowedRegistries",
        ),
        (
            "controller.allowedRegistries={*,e2ereg.azurecr.io}",
            "allowedRegistries",
        ),
        ("controller.allowedProxies={*.10.0.0.1}", "allowedProxies"),
        (
            "controller.nodeContextNamespaces=Team.io/x=y",
            "nodeContextNamespaces",
        ),
    ] {
        let e = install(&["--set", set]).expect_err(set);
        assert!(
            e.contains("HelmValuesError") && e.contains(field),
            "{set}: {e}"
        );
        let e = helm(c, &["status", RELEASE]).expect_err("no release");
        assert!(e.contains("not found"), "{e}");
        assert_eq!(release_objects(c), Vec::<String>::new(), "{set}");
    }
    say("helm: values the controller refuses are refused by the schema, nothing applied");

    // Install and wait.
    let rel = install(&[]).unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    assert_eq!(rel["status"], "deployed", "{rel}");
    assert_eq!(rel["revision"], 1, "{rel}");
    wait_for("/readyz of the release", Duration::from_secs(120), || {
        readyz_on(PORT)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    say("helm: installed, controller ready");

    // The release's operator reconciles checks against the lab servers.
    let ns = Ns::fresh(c, "helm");
    ns.check("deny", json!({"registry": DENY}));
    ns.check("ok", json!({"registry": LOGIN}));
    ns.wait_check("deny", "RegistryDeniedPrivateClientIP", RUN_WAIT, |v| {
        reason(v) == Some("RegistryDeniedPrivateClientIP")
    });
    ns.wait_check("ok", "Ready=True", RUN_WAIT, |v| ready(v) == Some("True"));
    say("helm: the release's operator diagnoses the lab's registries");

    // helm test: the chart's hook checks tests.registry (e2ereg) from the pod network.
    helm_test_passes(c, 1);

    // Upgrade: the metrics port, the target policy and the registry `helm test` checks.
    let rel = upgrade(&[
        "--set",
        &format!("controller.metricsPort={UPGRADED_PORT}"),
        "--set",
        &format!("controller.allowedRegistries={{{LOGIN}}}"),
        "--set",
        &format!("tests.registry={DENY}"),
    ])
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    assert_eq!(rel["revision"], 2, "{rel}");
    assert_eq!(rel["status"], "deployed", "{rel}");
    let args = controller_args(c);
    assert!(
        args.contains(&format!("--metrics-addr=0.0.0.0:{UPGRADED_PORT}"))
            && args.contains(&format!("--allowed-registries={LOGIN}")),
        "{args:?}"
    );
    wait_for("/readyz on the new port", Duration::from_secs(120), || {
        readyz_on(UPGRADED_PORT)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    ns.wait_check(
        "deny",
        "TargetNotAllowed after the upgrade",
        RUN_WAIT,
        |v| reason(v) == Some("TargetNotAllowed"),
    );
    say("helm: upgrade moved the metrics port and applied the target policy");

    // helm test of the upgraded release checks e2edeny, which refuses the pod's address: the
    // test fails, and its pod stays with the report (no hook-failed delete policy).
    let e = helm(c, &["test", RELEASE]).expect_err("helm test of a denied registry");
    assert!(e.contains("HelmReleaseError"), "{e}");
    let logs = c
        .k(&["logs", "-n", OPERATOR_NS, TEST_POD])
        .unwrap_or_else(|e| panic!("logs of the failed test pod: {e}"));
    assert!(
        logs.contains(&format!("Registry {DENY}: "))
            && !logs.contains(&format!("Registry {DENY}: Healthy"))
            && logs.contains("RegistryDeniedPrivateClientIP"),
        "helm test logs: {logs}"
    );
    let pod = c
        .get_json(&["pod", "-n", OPERATOR_NS, TEST_POD])
        .unwrap_or_else(|e| panic!("the failed test pod: {e}"));
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    say(&format!(
        "helm: helm test of {DENY} failed as it should: {}",
        e.trim()
    ));

    // An upgrade the cluster cannot take (no ServiceMonitor CRD): a clear failure, no new
    // revision, nothing applied.
    let e = upgrade(&["--set", "serviceMonitor.enabled=true"]).expect_err("no ServiceMonitor CRD");
    assert!(
        e.contains("ServiceMonitor") && e.contains("monitoring.coreos.com"),
        "{e}"
    );
    assert_eq!(
        history(c),
        vec![(1, "superseded".into()), (2, "deployed".into())],
        "the failed upgrade records no revision"
    );
    assert!(controller_args(c).contains(&format!("--metrics-addr=0.0.0.0:{UPGRADED_PORT}")));
    say(&format!(
        "helm: upgrade without the CRD refused: {}",
        e.trim()
    ));

    // Rollback to the first revision: port and policy back.
    let rel = helm(c, &["rollback", RELEASE, "1"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rel["revision"], 3, "{rel}");
    assert_eq!(rel["status"], "deployed", "{rel}");
    assert_eq!(
        history(c),
        vec![
            (1, "superseded".into()),
            (2, "superseded".into()),
            (3, "deployed".into())
        ]
    );
    assert!(controller_args(c).contains(&format!("--metrics-addr=0.0.0.0:{PORT}")));
    wait_for(
        "/readyz after the rollback",
        Duration::from_secs(120),
        || readyz_on(PORT),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    c.k(&[
        "annotate",
        "rcc",
        "-n",
        &ns.name,
        "deny",
        "--overwrite",
        "regcheck.dev/run-now=helm-rollback",
    ])
    .unwrap();
    ns.wait_check(
        "deny",
        "RegistryDeniedPrivateClientIP after the rollback",
        RUN_WAIT,
        |v| reason(v) == Some("RegistryDeniedPrivateClientIP"),
    );
    // The test hook is revision 1's again: it replaces the failed pod and passes.
    helm_test_passes(c, 3);
    say("helm: rollback restored revision 1");

    // Uninstall, the README's way: checks first (the controller removes their Jobs), then the
    // release. The CRD stays, as Helm leaves crds/ (docs/install.md says how to remove it).
    c.k(&[
        "delete",
        "rcc",
        "--all",
        "-n",
        &ns.name,
        "--wait=true",
        "--timeout=120s",
    ])
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    let out = helm(c, &["uninstall", RELEASE]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out["status"], "uninstalled", "{out}");
    assert_eq!(out["revision"], 3, "{out}");
    say(&format!("helm: uninstall: {out}"));
    wait_for("no object of the release", Duration::from_secs(120), || {
        release_objects(c).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", release_objects(c)));
    // The release's checks' Jobs (other tests' checks in their own namespaces keep running
    // until the harness's operator is back).
    let jobs = c
        .get_json(&[
            "jobs",
            "-A",
            "-l",
            &format!(
                "app.kubernetes.io/name=regcheck,regcheck.dev/check-namespace={}",
                ns.name
            ),
        ])
        .unwrap();
    assert_eq!(jobs["items"], json!([]), "no probe Job left");
    let secrets = c
        .get_json(&[
            "secrets",
            "-n",
            OPERATOR_NS,
            "-l",
            &format!("owner=helm,name={RELEASE}"),
        ])
        .unwrap();
    assert_eq!(secrets["items"], json!([]), "no release record left");
    c.k(&["get", "crd", "registryconnectivitychecks.regcheck.dev"])
        .expect("the CRD stays after helm uninstall");
    say("helm: uninstalled; nothing of the release left, the CRD kept");

    drop(uninstall);
    drop(reinstall);
    wait_for(
        "controller /readyz after reinstalling",
        Duration::from_secs(60),
        || c.http_get("/readyz").ok().filter(|(s, _)| *s == 200),
    )
    .unwrap();
}

//! Offline checks of the shipped manifests: `deploy/` (the kustomize base) against the operator
//! contract, and every example in `deploy/examples/` against the CRD's own schema and Rust types.
//!
//! The end-to-end tests (`tests/e2e.rs`) apply the same `deploy/` base to a real cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use regcheck::operator::crd::RegistryConnectivityCheck;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "regcheck-system";
const SERVICE_ACCOUNT: &str = "regcheck-controller";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every YAML document of a file, as JSON values (empty documents skipped).
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}

fn kustomization(dir: &str) -> Value {
    let docs = documents(&Path::new(ROOT).join(dir).join("kustomization.yaml"));
    assert_eq!(docs.len(), 1, "{dir}/kustomization.yaml has one document");
    docs.into_iter().next().unwrap()
}

/// The objects of `deploy/`, read from the files its kustomization lists.
fn deploy_objects() -> Vec<Value> {
    let k = kustomization("deploy");
    let resources = k["resources"].as_array().expect("deploy: resources list");
    let mut objs = Vec::new();
    for r in resources {
        let file = r.as_str().expect("resource is a path");
        objs.extend(documents(&Path::new(ROOT).join("deploy").join(file)));
    }
    objs
}

fn one<T: serde::de::DeserializeOwned>(objs: &[Value], kind: &str, name: &str) -> T {
    let found: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "deploy/ has exactly one {kind} {name}");
    serde_json::from_value(found[0].clone())
        .unwrap_or_else(|e| panic!("{kind} {name} does not parse: {e}"))
}

/// (apiGroup, resource) -> verbs, from a list of rules.
fn grants(rules: &[PolicyRule]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in rules {
        assert!(
            r.resource_names.is_none() && r.non_resource_urls.is_none(),
            "unexpected rule {r:?}"
        );
        for g in r.api_groups.as_deref().unwrap_or_default() {
            for res in r.resources.as_deref().unwrap_or_default() {
                m.entry((g.clone(), res.clone()))
                    .or_default()
                    .extend(r.verbs.iter().cloned());
            }
        }
    }
    m
}

fn expected(entries: &[(&str, &str, &[&str])]) -> BTreeMap<(String, String), BTreeSet<String>> {
    entries
        .iter()
        .map(|(g, r, verbs)| {
            (
                (g.to_string(), r.to_string()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn deploy_kustomization_lists_existing_files_and_leaves_the_crd_to_crds() {
    let k = kustomization("deploy");
    for r in k["resources"].as_array().unwrap() {
        let p = Path::new(ROOT).join("deploy").join(r.as_str().unwrap());
        assert!(
            p.is_file(),
            "deploy/kustomization.yaml lists {}",
            p.display()
        );
    }
    assert!(
        deploy_objects()
            .iter()
            .all(|o| o["kind"] != "CustomResourceDefinition"),
        "the CRD is installed from crds/, not deploy/"
    );
    let crds = kustomization("crds");
    let listed: Vec<&str> = crds["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        listed,
        [Path::new(regcheck::operator::crd::CRD_PATH)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()]
    );
}

#[test]
fn namespace_allows_privileged_pods_only_there() {
    let objs = deploy_objects();
    let ns: Namespace = one(&objs, "Namespace", NAMESPACE);
    let labels = ns.metadata.labels.unwrap();
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str),
            Some("privileged"),
            "{mode} label"
        );
    }
    // Every namespaced object lives in the operator namespace.
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        if matches!(kind, "Namespace" | "ClusterRole" | "ClusterRoleBinding") {
            assert!(
                o["metadata"]["namespace"].is_null(),
                "{kind} is cluster-scoped"
            );
        } else {
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{kind} namespace");
        }
    }
}

#[test]
fn rbac_is_exactly_the_contract() {
    let objs = deploy_objects();
    let cr: ClusterRole = one(&objs, "ClusterRole", "regcheck-controller");
    let got = grants(cr.rules.as_deref().unwrap_or_default());
    let want = expected(&[
        (
            "regcheck.dev",
            "registryconnectivitychecks",
            &["list", "watch", "patch"],
        ),
        (
            "regcheck.dev",
            "registryconnectivitychecks/status",
            &["patch"],
        ),
        (
            "regcheck.dev",
            "registryconnectivitychecks/finalizers",
            &["update"],
        ),
        (
            "batch",
            "jobs",
            &["list", "watch", "create", "deletecollection"],
        ),
        ("", "pods", &["list", "watch", "create", "delete"]),
        ("", "events", &["list"]),
        ("", "nodes", &["list"]),
        ("", "namespaces", &["get"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("", "events", &["list", "watch"]),
    ]);
    assert_eq!(got, want);
    assert!(
        !got.keys().any(|(_, r)| r.contains("secret") || r == "*"),
        "no Secrets, no wildcards"
    );

    let role: Role = one(&objs, "Role", "regcheck-leader-election");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        grants(role.rules.as_deref().unwrap_or_default()),
        expected(&[(
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"]
        )])
    );

    let crb: ClusterRoleBinding = one(&objs, "ClusterRoleBinding", "regcheck-controller");
    assert_eq!(
        (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
        ("ClusterRole", "regcheck-controller")
    );
    let rb: RoleBinding = one(&objs, "RoleBinding", "regcheck-leader-election");
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", "regcheck-leader-election")
    );
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, SERVICE_ACCOUNT);
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    }
    let _: ServiceAccount = one(&objs, "ServiceAccount", SERVICE_ACCOUNT);
}

#[test]
fn deployment_runs_the_controller_hardened_with_the_contract_env() {
    let objs = deploy_objects();
    let d: Deployment = one(&objs, "Deployment", "regcheck-controller");
    let spec = d.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_ne!(
        pod.host_network,
        Some(true),
        "the base does not use hostNetwork"
    );
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["controller".to_string()][..]));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let res = c.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            res.requests.as_ref().unwrap().contains_key(key),
            "{key} request"
        );
        assert!(
            res.limits.as_ref().unwrap().contains_key(key),
            "{key} limit"
        );
    }

    // Health endpoints on the metrics port.
    let port = c.ports.as_ref().unwrap();
    assert_eq!(port.len(), 1);
    assert_eq!(
        (port[0].name.as_deref(), port[0].container_port),
        (Some("metrics"), 8080)
    );
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));

    // Environment of the contract.
    let env: BTreeMap<&str, &k8s_openapi::api::core::v1::EnvVar> = c
        .env
        .as_deref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let value = |k: &str| env.get(k).and_then(|e| e.value.as_deref());
    assert_eq!(
        env["POD_NAMESPACE"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.namespace")
    );
    // The leader-election identity is the pod's name.
    assert_eq!(
        env["POD_NAME"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.name")
    );
    assert_eq!(value("REGCHECK_METRICS_ADDR"), Some("0.0.0.0:8080"));
    assert_eq!(value("REGCHECK_LEADER_ELECTION"), Some("true"));
    assert_eq!(
        value("REGCHECK_PROBE_IMAGE_PULL_POLICY"),
        Some("IfNotPresent")
    );
    for k in env.keys() {
        assert!(
            k.starts_with("REGCHECK_") || matches!(*k, "POD_NAMESPACE" | "POD_NAME" | "RUST_LOG"),
            "unexpected env {k}"
        );
    }

    // The probe image is the controller's image after kustomize's `images:` rewrite.
    let k = kustomization("deploy");
    let images = k["images"].as_array().unwrap();
    let rule = images
        .iter()
        .find(|i| Some(i["name"].as_str().unwrap()) == c.image.as_deref())
        .expect("an images: entry for the container image");
    let rendered = format!(
        "{}:{}",
        rule["newName"].as_str().unwrap(),
        rule["newTag"].as_str().unwrap()
    );
    assert_eq!(value("REGCHECK_PROBE_IMAGE"), Some(rendered.as_str()));

    // Selector matches the pod, and the Service selects the same pods.
    let sel = spec.selector.match_labels.unwrap();
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert!(sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let svc: Service = one(&objs, "Service", "regcheck-metrics");
    let svc = svc.spec.unwrap();
    assert_eq!(svc.selector.unwrap(), sel);
    let p = &svc.ports.unwrap()[0];
    assert_eq!((p.name.as_deref(), p.port), (Some("metrics"), 8080));
}

// ---------------------------------------------------------------------------------------------
// Examples against the CRD schema (the structural OpenAPI subset the API server checks; CEL
// rules are tested in src/operator/crd.rs).

fn crd_schema() -> Value {
    let docs = documents(&Path::new(ROOT).join(regcheck::operator::crd::CRD_PATH));
    docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Errors of `v` against the OpenAPI v3 schema `s` at `path`.
fn validate(s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(format!("{path}: want int or string, got {v}"));
        }
        return;
    }
    let ty = s.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errs.push(format!("{path}: want {}, got {v}", ty.unwrap_or("?")));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errs.push(format!("{path}: {v} is not one of {allowed:?}"));
    }
    match v {
        Value::String(text) => {
            let n = text.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                errs.push(format!("{path}: longer than {max}"));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                errs.push(format!("{path}: shorter than {min}"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
                if !re.is_match(text) {
                    errs.push(format!("{path}: {text:?} does not match {p}"));
                }
            }
        }
        Value::Number(num) => {
            let x = num.as_f64().unwrap();
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errs.push(format!("{path}: {x} > {max}"));
            }
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errs.push(format!("{path}: {x} < {min}"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(format!("{path}: more than {max} items"));
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(is, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                errs.push(format!("{path}: more than {max} properties"));
            }
            for req in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap();
                if !map.contains_key(req) {
                    errs.push(format!("{path}: missing required field {req}"));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            for (k, val) in map {
                let child = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(ps), _) => validate(ps, val, &child, errs),
                    (None, Some(a)) if a.is_object() => validate(a, val, &child, errs),
                    // The API server would prune it silently: an example must not rely on that.
                    (None, _) if props.is_some() => {
                        errs.push(format!("{child}: unknown field (would be pruned)"))
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The part of an object the CRD schema covers: apiVersion, kind and metadata are checked by
/// the API server itself.
fn body(doc: &Value) -> Value {
    let mut b = doc.clone();
    let m = b.as_object_mut().expect("an object");
    for k in ["apiVersion", "kind", "metadata"] {
        m.remove(k);
    }
    b
}

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn examples_match_the_crd_schema_and_types() {
    let schema = crd_schema();
    let files = example_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "aks-egress-essentials.yaml",
        "azure-private-endpoint.yaml",
        "proxy.yaml",
        "public-registry-data-endpoint.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "example {want} missing");
    }
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        for doc in docs {
            assert_eq!(
                doc["apiVersion"],
                "regcheck.dev/v1alpha1",
                "{}",
                file.display()
            );
            assert_eq!(
                doc["kind"],
                "RegistryConnectivityCheck",
                "{}",
                file.display()
            );
            let mut errs = Vec::new();
            validate(&schema, &body(&doc), "", &mut errs);
            assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
            let check: RegistryConnectivityCheck = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // Every example is commented: what it is for is explained in the file.
            assert!(
                read(file)
                    .lines()
                    .filter(|l| l.trim_start().starts_with('#'))
                    .count()
                    >= 3,
                "{} explains itself in comments",
                file.display()
            );
            assert_eq!(
                Some(check.spec.registry.as_str()),
                doc["spec"]["registry"].as_str(),
                "{}",
                file.display()
            );
        }
    }
}

#[test]
fn schema_validator_rejects_what_the_api_server_would() {
    // The validator above must not pass everything: feed it broken specs.
    let schema = crd_schema();
    let cases = [
        (
            serde_json::json!({"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "spec": {"registry": "bad host!"}}),
            ".spec.registry",
        ),
        (
            serde_json::json!({"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "spec": {"registry": "r.example.com", "timeoutSeconds": 0}}),
            ".spec.timeoutSeconds",
        ),
        (
            serde_json::json!({"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "spec": {"registry": "r.example.com", "expect": {"networkAccess": "Sometimes"}}}),
            ".spec.expect.networkAccess",
        ),
        (
            serde_json::json!({"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "spec": {"registry": "r.example.com", "intervall": "5m"}}),
            ".spec.intervall",
        ),
        (
            serde_json::json!({"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "spec": {}}),
            "missing required field registry",
        ),
    ];
    for (doc, want) in cases {
        let mut errs = Vec::new();
        validate(&schema, &body(&doc), "", &mut errs);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{doc}: expected an error about {want}, got {errs:?}"
        );
    }
}

use super::*;
use crate::engine::findings::Severity;
use crate::operator::crd::RegistryConnectivityCheckSpec;
use serde_json::{Value, json};

const IMAGE: &str = "10.88.0.1:5000/lab/app:1";

fn check(spec: Value) -> RegistryConnectivityCheck {
    let spec: RegistryConnectivityCheckSpec = serde_json::from_value(spec).unwrap();
    let mut c = RegistryConnectivityCheck::new("acr", spec);
    c.metadata.namespace = Some("team-a".into());
    c.metadata.uid = Some("0f0e0d0c-0000-4000-8000-00000000abcd".into());
    c.metadata.generation = Some(3);
    c
}

fn lab_check() -> RegistryConnectivityCheck {
    check(json!({
        "registry": "10.88.0.1:5000", "image": "lab/app:1",
        "credentialsSecretRef": {"name": "pull-secret"},
        "contexts": {"kubelet": {"enabled": true},
                     "node": {"tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}
    }))
}

fn target() -> Target {
    Target {
        node: "aks-user-0".into(),
        node_pool: Some("user".into()),
        zone: Some("z1".into()),
    }
}

fn build(c: &RegistryConnectivityCheck) -> Pod {
    let spec = ValidSpec::parse(&c.spec).unwrap();
    let ann = BTreeMap::from([("regcheck.dev/run-size".to_string(), "6".to_string())]);
    build_canary(&CanaryPod {
        check: c,
        spec: &spec,
        run_id: "r7",
        target: &target(),
        run_annotations: &ann,
    })
    .unwrap()
}

#[test]
fn canary_pod_is_pinned_by_affinity_restricted_and_never_runs() {
    let c = lab_check();
    let pod = build(&c);
    let v = serde_json::to_value(&pod).unwrap();
    let spec = &v["spec"];
    // The scheduler places it (taints, quotas, admission): no nodeName.
    assert!(spec["nodeName"].is_null(), "{spec}");
    let term = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(
        term["matchFields"],
        json!([{"key": "metadata.name", "operator": "In", "values": ["aks-user-0"]}])
    );
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    );
    let ctr = &spec["containers"][0];
    assert_eq!(ctr["image"], IMAGE);
    assert_eq!(ctr["imagePullPolicy"], "Always");
    assert_eq!(ctr["command"], json!([COMMAND]));
    assert!(ctr["args"].is_null());
    // restricted Pod Security.
    let sc = &ctr["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert!(spec["hostNetwork"].is_null());
    // Tiny requests and limits.
    assert_eq!(
        ctr["resources"]["requests"],
        json!({"cpu": CPU, "memory": MEMORY})
    );
    assert_eq!(
        ctr["resources"]["limits"],
        json!({"cpu": CPU, "memory": MEMORY})
    );
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert!(spec["serviceAccountName"].is_null());
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "pull-secret"}]));
    assert!(spec["volumes"].is_null(), "the canary mounts nothing");
    // A backstop deadline beyond the run's: timeout 10 + slack 120 + 60.
    assert_eq!(spec["activeDeadlineSeconds"], 190);
    // Owned by the check, in its namespace, labelled like the probe Jobs.
    let meta = &v["metadata"];
    assert_eq!(meta["namespace"], "team-a");
    assert_eq!(
        meta["ownerReferences"],
        json!([{"apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
                "name": "acr", "uid": "0f0e0d0c-0000-4000-8000-00000000abcd", "controller": true}])
    );
    let l = &meta["labels"];
    assert_eq!(l["app.kubernetes.io/managed-by"], "regcheck");
    assert_eq!(l["app.kubernetes.io/component"], COMPONENT);
    assert_eq!(l["regcheck.dev/context"], "kubelet");
    assert_eq!(l["regcheck.dev/run"], "r7");
    assert_eq!(
        l["regcheck.dev/check-uid"],
        "0f0e0d0c-0000-4000-8000-00000000abcd"
    );
    assert_eq!(meta["annotations"]["regcheck.dev/check"], "team-a/acr");
    assert_eq!(meta["annotations"]["regcheck.dev/node"], "aks-user-0");
    assert_eq!(meta["annotations"]["regcheck.dev/run-size"], "6");
    let name = meta["name"].as_str().unwrap();
    assert!(name.starts_with("rcc-acr-k-") && name.len() <= 63, "{name}");
    assert_eq!(
        canary_target(&pod),
        Some(Target {
            node_pool: None,
            zone: None,
            ..target()
        })
    );
}

#[test]
fn service_account_gives_exactly_its_pull_secrets() {
    let c = check(json!({
        "registry": "r.azurecr.io", "image": "app:1",
        "credentialsSecretRef": {"name": "pull-secret"},
        "contexts": {"kubelet": {"enabled": true, "serviceAccountName": "builder"}}
    }));
    let v = serde_json::to_value(build(&c)).unwrap();
    assert_eq!(v["spec"]["serviceAccountName"], "builder");
    // Admission copies the ServiceAccount's imagePullSecrets into a pod that names none.
    assert!(v["spec"]["imagePullSecrets"].is_null());
    assert_eq!(v["spec"]["automountServiceAccountToken"], false);
    assert_eq!(v["spec"]["containers"][0]["image"], "r.azurecr.io/app:1");
}

#[test]
fn image_reference_names_the_registry() {
    let c = check(
        json!({"registry": "r.azurecr.io", "image": "team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"}),
    );
    let spec = ValidSpec::parse(&c.spec).unwrap();
    assert_eq!(
        image_reference(&spec).unwrap(),
        "r.azurecr.io/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    );
    let none = check(json!({"registry": "r.azurecr.io"}));
    assert_eq!(
        image_reference(&ValidSpec::parse(&none.spec).unwrap()),
        None
    );
}

// ---- outcome reader: statuses and Events as the 1.20 kubelet writes them

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn pod(status: Value) -> Pod {
    let mut p = build(&lab_check());
    p.metadata.uid = Some("pod-uid-1".into());
    p.status = Some(serde_json::from_value(status).unwrap());
    p
}

fn scheduled(mut status: Value, containers: Value) -> Pod {
    status["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
    status["containerStatuses"] = containers;
    let mut p = pod(status);
    p.spec.as_mut().unwrap().node_name = Some("aks-user-0".into());
    p
}

fn waiting(reason: &str, message: &str) -> Value {
    json!([{"name": CONTAINER, "image": IMAGE, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}])
}

fn event(reason: &str, message: &str, at: i64) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("e-{reason}-{at}"), "namespace": "team-a"},
        "involvedObject": {"kind": "Pod", "name": "x", "namespace": "team-a", "uid": "pod-uid-1",
                           "fieldPath": "spec.containers{pull-canary}"},
        "reason": reason, "message": message, "type": if reason == "Failed" { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": "aks-user-0"},
        "lastTimestamp": ts(at).to_string(), "count": 1
    }))
    .unwrap()
}

const X509: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"10.88.0.1:5000/lab/app:1\": failed to resolve reference \"10.88.0.1:5000/lab/app:1\": failed to do request: Head \"https://10.88.0.1:5000/v2/lab/app/manifests/1\": x509: certificate signed by unknown authority";
const UNAUTHORIZED: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"10.88.0.1:5000/lab/app:1\": failed to resolve reference \"10.88.0.1:5000/lab/app:1\": pulling from host 10.88.0.1:5000 failed with status code [manifests 1]: 401 Unauthorized";
const PROXY: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"10.88.0.1:5000/lab/app:1\": failed to resolve reference \"10.88.0.1:5000/lab/app:1\": failed to do request: Head \"https://10.88.0.1:5000/v2/lab/app/manifests/1\": proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused";

#[test]
fn pulled_image_is_success_whatever_the_container_did_after() {
    let dl = ts(130);
    let start_error = scheduled(
        json!({"phase": "Failed"}),
        json!([{"name": CONTAINER, "image": IMAGE,
                "imageID": "10.88.0.1:5000/lab/app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                    "message": "failed to create containerd task: OCI runtime create failed: exec: \"/regcheck-pull-canary/never-runs\": stat /regcheck-pull-canary/never-runs: no such file or directory: unknown"}}}]),
    );
    assert!(matches!(
        read_outcome(&start_error, &[], dl, ts(5)),
        CanaryOutcome::Pulled { .. }
    ));
    for reason in ["CreateContainerError", "RunContainerError", "StartError"] {
        let p = scheduled(json!({"phase": "Pending"}), waiting(reason, "exec failed"));
        assert!(
            matches!(
                read_outcome(&p, &[], dl, ts(5)),
                CanaryOutcome::Pulled { .. }
            ),
            "{reason}"
        );
    }
    // Only the Event has arrived yet.
    let p = scheduled(
        json!({"phase": "Pending"}),
        waiting("ContainerCreating", ""),
    );
    let evs = [
        event("Pulling", "Pulling image \"10.88.0.1:5000/lab/app:1\"", 1),
        event(
            "Pulled",
            "Successfully pulled image \"10.88.0.1:5000/lab/app:1\" in 1.2s",
            2,
        ),
    ];
    assert!(matches!(
        read_outcome(&p, &evs, dl, ts(5)),
        CanaryOutcome::Pulled { .. }
    ));
}

#[test]
fn failed_pull_takes_the_kubelets_message() {
    let dl = ts(130);
    let p = scheduled(json!({"phase": "Pending"}), waiting("ErrImagePull", X509));
    assert_eq!(
        read_outcome(&p, &[], dl, ts(5)),
        CanaryOutcome::PullFailed {
            message: X509.into()
        }
    );
    // The back-off names only the image: the reason is in the Events...
    let backoff = scheduled(
        json!({"phase": "Pending"}),
        waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"10.88.0.1:5000/lab/app:1\"",
        ),
    );
    assert_eq!(
        read_outcome(&backoff, &[], dl, ts(5)),
        CanaryOutcome::Pending
    );
    let evs = [
        event("Pulling", "Pulling image \"10.88.0.1:5000/lab/app:1\"", 1),
        event(
            "Failed",
            &format!("Failed to pull image \"10.88.0.1:5000/lab/app:1\": {UNAUTHORIZED}"),
            2,
        ),
        event("Failed", "Error: ErrImagePull", 3),
        event(
            "BackOff",
            "Back-off pulling image \"10.88.0.1:5000/lab/app:1\"",
            4,
        ),
        event("Failed", "Error: ImagePullBackOff", 5),
    ];
    match read_outcome(&backoff, &evs, dl, ts(6)) {
        CanaryOutcome::PullFailed { message } => assert!(message.contains("401 Unauthorized")),
        o => panic!("{o:?}"),
    }
    // ...and at the deadline without them, the back-off is still a failed pull.
    assert!(matches!(
        read_outcome(&backoff, &[], dl, ts(131)),
        CanaryOutcome::PullFailed { .. }
    ));
}

#[test]
fn deadline_tells_a_stalled_pull_from_probe_infrastructure() {
    let dl = ts(130);
    let creating = scheduled(
        json!({"phase": "Pending"}),
        waiting("ContainerCreating", ""),
    );
    let pulling = [event(
        "Pulling",
        "Pulling image \"10.88.0.1:5000/lab/app:1\"",
        1,
    )];
    assert_eq!(
        read_outcome(&creating, &pulling, dl, ts(60)),
        CanaryOutcome::Pending
    );
    assert!(matches!(
        read_outcome(&creating, &pulling, dl, ts(130)),
        CanaryOutcome::Stalled { .. }
    ));
    // Never began pulling: the sandbox failed.
    let sandbox = [event(
        "FailedCreatePodSandBox",
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network",
        1,
    )];
    match read_outcome(&creating, &sandbox, dl, ts(131)) {
        CanaryOutcome::NotRun { reason, message } => {
            assert_eq!(reason, Reason::ProbeTimedOut);
            assert!(message.contains("sandbox"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    // Not scheduled: untolerated taint.
    let pending = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable",
        "message": "0/2 nodes are available: 1 node(s) had taint {sku: gpu}, that the pod didn't tolerate."}]}),
    );
    assert_eq!(
        read_outcome(&pending, &[], dl, ts(60)),
        CanaryOutcome::Pending
    );
    match read_outcome(&pending, &[], dl, ts(130)) {
        CanaryOutcome::NotRun { reason, message } => {
            assert_eq!(reason, Reason::ProbeUnschedulable);
            assert!(message.contains("taint"), "{message}");
        }
        o => panic!("{o:?}"),
    }
    // Not admitted by the kubelet: known at once.
    let rejected = pod(
        json!({"phase": "Failed", "reason": "OutOfpods", "message": "Node didn't have enough resource: pods"}),
    );
    assert!(matches!(
        read_outcome(&rejected, &[], dl, ts(1)),
        CanaryOutcome::NotRun {
            reason: Reason::ProbeUnschedulable,
            ..
        }
    ));
}

// ---- records and comparison with the node probe

fn node_report(verdict: Verdict, reason: Reason) -> ProbeRecord {
    let f = Finding::catalogued(reason, "10.88.0.1", Some(Role::LoginServer), "node probe");
    let mut r = kubelet_report(f, verdict, "10.88.0.1:5000", "aks-user-0");
    r.context = Some(ProbeContext::Node);
    ProbeRecord {
        context: ProbeContext::Node,
        target: Some(target()),
        outcome: ProbeOutcome::Report(Box::new(r)),
    }
}

fn kubelet(outcome: CanaryOutcome) -> ProbeRecord {
    outcome_record(&outcome, Some(target()), IMAGE, "10.88.0.1:5000").unwrap()
}

fn first_reason(rec: &ProbeRecord) -> Reason {
    match &rec.outcome {
        ProbeOutcome::Report(r) => r.findings[0].reason,
        o => panic!("{o:?}"),
    }
}

#[test]
fn records_classify_the_runtime_message() {
    let ok = kubelet(CanaryOutcome::Pulled { detail: "x".into() });
    assert_eq!(first_reason(&ok), Reason::Healthy);
    let x509 = kubelet(CanaryOutcome::PullFailed {
        message: X509.into(),
    });
    // The classifier reads an unknown authority as interception (a CA the client lacks).
    assert_eq!(first_reason(&x509), Reason::TLSInterception);
    let ProbeOutcome::Report(r) = &x509.outcome else {
        unreachable!()
    };
    assert_eq!(r.context, Some(ProbeContext::Kubelet));
    assert_eq!(r.node.as_deref(), Some("aks-user-0"));
    assert!(
        r.findings[0]
            .message
            .starts_with("kubelet pull on aks-user-0:")
    );
    let stalled = kubelet(CanaryOutcome::Stalled { detail: "x".into() });
    assert_eq!(first_reason(&stalled), Reason::KubeletPullStalled);
    let infra = kubelet(CanaryOutcome::NotRun {
        reason: Reason::ProbeUnschedulable,
        message: "m".into(),
    });
    assert!(matches!(
        infra.outcome,
        ProbeOutcome::Failed {
            reason: Reason::ProbeUnschedulable,
            ..
        }
    ));
    assert_eq!(
        outcome_record(&CanaryOutcome::Pending, None, IMAGE, "r"),
        None
    );
}

#[test]
fn comparison_names_the_runtimes_difference() {
    let healthy_node = node_report(Verdict::Healthy, Reason::Healthy);
    let cases = [
        (UNAUTHORIZED, Reason::KubeletPullUnauthorized),
        (X509, Reason::KubeletTLSUntrusted),
        (PROXY, Reason::KubeletProxyDiffers),
    ];
    for (msg, want) in cases {
        let k = kubelet(CanaryOutcome::PullFailed {
            message: msg.into(),
        });
        let out = compare_with_node(&[healthy_node.clone(), k]);
        assert_eq!(first_reason(&out[1]), want, "{msg}");
        assert_eq!(out[0], healthy_node);
        let s = summarize(&out);
        assert_eq!(s.disagreements.len(), 1);
        assert_eq!(s.disagreements[0].kubelet_reason, want);
        assert_eq!(s.disagreements[0].node_reason, Reason::Healthy);
        assert_eq!((s.reported, s.failed, s.pulled), (1, 1, 0));
        assert!(want.remediation().len() > 100);
    }
    // The node probe fails TLS too: the kubelet's x509 is the same problem, not a difference.
    let node_tls = node_report(Verdict::Unreachable, Reason::TLSCertificateInvalid);
    let k = kubelet(CanaryOutcome::PullFailed {
        message: X509.into(),
    });
    let out = compare_with_node(&[node_tls, k.clone()]);
    assert_eq!(first_reason(&out[1]), Reason::TLSInterception);
    assert!(summarize(&out).disagreements.is_empty());
    assert!(summarize(&out).compared);
    // Without a node report on that node nothing is compared.
    let out = compare_with_node(std::slice::from_ref(&k));
    assert_eq!(first_reason(&out[0]), Reason::TLSInterception);
    assert!(!summarize(&out).compared);
    // The node probe cannot reach the API, the kubelet pulls (a mirror or proxy of its own).
    let node_down = node_report(Verdict::Unreachable, Reason::ConnectionTimedOut);
    let ok = kubelet(CanaryOutcome::Pulled { detail: "x".into() });
    let s = summarize(&compare_with_node(&[node_down, ok]));
    assert_eq!(s.disagreements.len(), 1);
    assert_eq!(s.disagreements[0].kubelet_reason, Reason::Healthy);
}

#[test]
fn kubelet_reasons_are_registry_path_findings_not_probe_failures() {
    for r in [
        Reason::KubeletPullUnauthorized,
        Reason::KubeletTLSUntrusted,
        Reason::KubeletProxyDiffers,
        Reason::KubeletPullStalled,
    ] {
        assert!(!r.is_probe_failure(), "{r}");
        assert!(r.is_operator(), "{r}");
        assert_eq!(r.default_severity(), Severity::Error);
    }
    assert!(
        Reason::KubeletPullUnauthorized
            .remediation()
            .contains("--attach-acr")
    );
    assert!(
        Reason::KubeletPullUnauthorized
            .remediation()
            .contains("AcrPull")
    );
    assert!(
        Reason::KubeletPullUnauthorized
            .remediation()
            .contains("imagePullSecrets")
    );
    assert!(
        Reason::KubeletTLSUntrusted
            .remediation()
            .contains("hosts.toml")
    );
    assert!(
        Reason::KubeletProxyDiffers
            .remediation()
            .contains("drop-in")
    );
}

// ---- aggregation: status.results, ImagePullable, ContextsConsistent, diagnosis

fn status_after(
    c: &RegistryConnectivityCheck,
    records: &[ProbeRecord],
) -> crate::operator::crd::RegistryConnectivityCheckStatus {
    use crate::operator::aggregate::{aggregate, next_status};
    use crate::operator::crd::RunInfo;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let summary = aggregate(records);
    let run = RunInfo {
        id: "r1".into(),
        start_time: None,
        completion_time: None,
        duration_ms: None,
    };
    next_status(
        &Default::default(),
        &c.spec,
        Some(3),
        &summary,
        run,
        &Time(ts(0)),
    )
}

fn cond<'a>(
    st: &'a crate::operator::crd::RegistryConnectivityCheckStatus,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == t)
}

#[test]
fn unauthorized_kubelet_pull_next_to_a_healthy_node_probe_is_the_diagnosis() {
    use crate::operator::aggregate::conditions;
    let c = lab_check();
    let records = [
        node_report(Verdict::Healthy, Reason::Healthy),
        kubelet(CanaryOutcome::PullFailed {
            message: UNAUTHORIZED.into(),
        }),
    ];
    let st = status_after(&c, &records);
    let pullable = cond(&st, conditions::IMAGE_PULLABLE).unwrap();
    assert_eq!(pullable.status, "False");
    assert_eq!(pullable.reason, "KubeletPullUnauthorized");
    assert!(
        pullable.message.contains("aks-user-0"),
        "{}",
        pullable.message
    );
    let ctx = cond(&st, conditions::CONTEXTS_CONSISTENT).unwrap();
    assert_eq!(ctx.status, "False");
    assert_eq!(ctx.reason, "KubeletPullUnauthorized");
    assert!(
        ctx.message
            .contains("node network Healthy, kubelet pull KubeletPullUnauthorized")
    );
    let d = st.diagnosis.as_ref().unwrap();
    assert_eq!(d.reason, "KubeletPullUnauthorized");
    assert_eq!(d.context, Some(ProbeContext::Kubelet));
    assert!(d.remediation.contains("--attach-acr"));
    // The kubelet's result is in status.results with context Kubelet.
    assert!(st.results.iter().any(|r| r.context == ProbeContext::Kubelet
        && r.reason == "KubeletPullUnauthorized"
        && r.node.as_deref() == Some("aks-user-0")));
    assert_eq!(st.consecutive_failures, 1);
}

#[test]
fn pulled_image_makes_image_pullable_true_and_contexts_agree() {
    use crate::operator::aggregate::{conditions, reasons};
    let c = lab_check();
    let records = [
        node_report(Verdict::Healthy, Reason::Healthy),
        kubelet(CanaryOutcome::Pulled { detail: "x".into() }),
    ];
    let st = status_after(&c, &records);
    let pullable = cond(&st, conditions::IMAGE_PULLABLE).unwrap();
    assert_eq!(
        (pullable.status.as_str(), pullable.reason.as_str()),
        ("True", reasons::IMAGE_PULLED)
    );
    let ctx = cond(&st, conditions::CONTEXTS_CONSISTENT).unwrap();
    assert_eq!(ctx.status, "True");
    assert_eq!(st.consecutive_successes, 1);
    // A stalled pull is a registry-path finding: the run fails, probes stay healthy.
    let stalled = [
        node_report(Verdict::Healthy, Reason::Healthy),
        kubelet(CanaryOutcome::Stalled { detail: "x".into() }),
    ];
    let st = status_after(&c, &stalled);
    assert_eq!(
        cond(&st, conditions::IMAGE_PULLABLE).unwrap().reason,
        "KubeletPullStalled"
    );
    assert_eq!(
        cond(&st, conditions::PROBES_HEALTHY).unwrap().status,
        "True"
    );
    assert_eq!(st.consecutive_failures, 1);
    // A canary that never pulled is probe infrastructure.
    let unscheduled = [
        node_report(Verdict::Healthy, Reason::Healthy),
        kubelet(CanaryOutcome::NotRun {
            reason: Reason::ProbeUnschedulable,
            message: "taint".into(),
        }),
    ];
    let st = status_after(&c, &unscheduled);
    assert_eq!(
        cond(&st, conditions::IMAGE_PULLABLE).unwrap().status,
        "Unknown"
    );
    assert_eq!(
        cond(&st, conditions::PROBES_HEALTHY).unwrap().reason,
        "ProbeUnschedulable"
    );
    // Without the kubelet context the condition is not there.
    let off = check(json!({"registry": "10.88.0.1:5000", "image": "lab/app:1"}));
    let st = status_after(&off, &[node_report(Verdict::Healthy, Reason::Healthy)]);
    assert!(cond(&st, conditions::IMAGE_PULLABLE).is_none());
}

//! Pull canaries in a run, against the mocked API server: created with the run's Jobs,
//! settled (the kubelet's Events asked when the back-off hides the error, the pod deleted) and
//! collected into the status.

use super::*;
use crate::operator::canary;

const UNAUTHORIZED: &str = "Failed to pull image \"r.azurecr.io/app:1\": rpc error: code = Unknown desc = failed to pull and unpack image \"r.azurecr.io/app:1\": failed to resolve reference \"r.azurecr.io/app:1\": pulling from host r.azurecr.io failed with status code [manifests 1]: 401 Unauthorized";

fn kubelet_check() -> RegistryConnectivityCheck {
    check(
        1,
        json!({"image": "app:1", "interval": "1h",
               "contexts": {"pod": {"enabled": false}, "kubelet": {"enabled": true}}}),
    )
}

fn create_canary() -> Step {
    step(
        Method::POST,
        format!("/api/v1/namespaces/{NS}/pods"),
        201,
        None,
    )
    .body(|b| {
        assert_eq!(b["metadata"]["namespace"], NS);
        assert_eq!(b["metadata"]["labels"]["regcheck.dev/context"], "kubelet");
        assert_eq!(b["metadata"]["labels"]["regcheck.dev/run"], "r1");
        assert_eq!(b["metadata"]["labels"]["regcheck.dev/check-uid"], UID);
        // Two node Jobs and two canaries.
        assert_eq!(b["metadata"]["annotations"]["regcheck.dev/run-size"], "4");
        assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], UID);
        let spec = &b["spec"];
        assert!(spec["nodeName"].is_null(), "{spec}");
        assert_eq!(spec["containers"][0]["image"], "r.azurecr.io/app:1");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["automountServiceAccountToken"], false);
        let node = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0];
        assert_eq!(node["key"], "metadata.name");
    })
}

/// The canaries of run 1 as the API server shows them, created now.
fn canaries_of(c: &RegistryConnectivityCheck) -> Vec<Pod> {
    let spec = ValidSpec::parse(&c.spec).unwrap();
    canaries::plan(c, &spec, &targets(c, 1), 1, 4)
        .into_iter()
        .map(|mut p| {
            p.metadata.uid = Some(format!("uid-{}", p.name_any()));
            p.metadata.creation_timestamp = Some(Time(Timestamp::now()));
            p.spec.as_mut().unwrap().node_name = p.annotations().get("regcheck.dev/node").cloned();
            p
        })
        .collect()
}

#[tokio::test]
async fn canaries_are_created_settled_and_collected() {
    let Setup { ctx, handle } = setup(config());
    let c = kubelet_check();

    // The run starts: two node Jobs, then a canary per planned node.
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        create_canary(),
        create_canary(),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_probe_jobs_created_total{context="kubelet"} 2"#)
    );

    // The node probes report healthy. On aks-sys-0 the kubelet pulled the image (the command
    // then failed to start, as intended); on aks-user-0 it backs off, and only its Events
    // say why: 401.
    let jobs = jobs_of(&c, 1, "complete");
    let pods: Vec<Value> = jobs.iter().map(|j| pod_of_job(j, Some(HEALTHY))).collect();
    let mut canaries = canaries_of(&c);
    assert_eq!(canaries.len(), 2);
    for p in &mut canaries {
        let node = p.annotations()["regcheck.dev/node"].clone();
        let status = if node == "aks-sys-0" {
            json!({"phase": "Failed", "containerStatuses": [{"name": canary::CONTAINER,
                "image": "r.azurecr.io/app:1", "imageID": "r.azurecr.io/app@sha256:11", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 128, "reason": "StartError"}}}]})
        } else {
            json!({"phase": "Pending", "containerStatuses": [{"name": canary::CONTAINER,
                "image": "r.azurecr.io/app:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"r.azurecr.io/app:1\""}}}]})
        };
        p.status = Some(serde_json::from_value(status).unwrap());
    }
    let canary_values: Vec<Value> = canaries
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    cache(&ctx, &jobs, &[pods, canary_values].concat());

    // Settled in name order (the cache's): the pulled one is deleted at once; the one that
    // backs off needs its Events first.
    let mut sorted = canaries.clone();
    sorted.sort_by_key(|p| p.name_any());
    let mut steps = Vec::new();
    for p in &sorted {
        let name = p.name_any();
        if p.annotations()["regcheck.dev/node"] == "aks-user-0" {
            let uid = p.metadata.uid.clone().unwrap();
            let events = list(
                "EventList",
                "v1",
                vec![json!({
                    "metadata": {"name": "e1", "namespace": NS},
                    "involvedObject": {"kind": "Pod", "name": name, "namespace": NS, "uid": uid},
                    "reason": "Failed", "type": "Warning", "message": UNAUTHORIZED,
                    "source": {"component": "kubelet", "host": "aks-user-0"},
                    "lastTimestamp": "2024-01-01T00:00:05Z"
                })],
            );
            steps.push(
                step(
                    Method::GET,
                    format!("/api/v1/namespaces/{NS}/events"),
                    200,
                    Some(events),
                )
                .query(&format!("fieldSelector=involvedObject.uid={uid}")),
            );
        }
        steps.push(step(
            Method::DELETE,
            format!("/api/v1/namespaces/{NS}/pods/{name}"),
            200,
            Some(serde_json::to_value(p).unwrap()),
        ));
    }
    steps.extend([
        patch_status(|s| {
            let pullable = condition(s, "ImagePullable");
            assert_eq!(pullable["status"], "False", "{s}");
            assert_eq!(pullable["reason"], "KubeletPullUnauthorized");
            let contexts = condition(s, "ContextsConsistent");
            assert_eq!(contexts["status"], "False");
            assert_eq!(contexts["reason"], "KubeletPullUnauthorized");
            assert_eq!(s["diagnosis"]["reason"], "KubeletPullUnauthorized");
            assert_eq!(s["diagnosis"]["context"], "Kubelet");
            assert_eq!(s["diagnosis"]["node"], "aks-user-0");
            assert_eq!(condition(s, "ProbesHealthy")["status"], "True");
            assert_eq!(condition(s, "Ready")["status"], "False");
            let results = s["results"].as_array().unwrap();
            assert_eq!(results.len(), 4, "{s}");
            let kubelet: Vec<(&str, &str)> = results
                .iter()
                .filter(|r| r["context"] == "Kubelet")
                .map(|r| (r["node"].as_str().unwrap(), r["reason"].as_str().unwrap()))
                .collect();
            assert_eq!(
                kubelet,
                [
                    ("aks-user-0", "KubeletPullUnauthorized"),
                    ("aks-sys-0", "Healthy")
                ]
            );
        }),
        event("Warning", "KubeletPullUnauthorized"),
        delete_jobs(PROBE_NS, sel_run("r1")),
        // The canaries were deleted when settled: not again.
    ]);
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    res.unwrap();
    // Collected and forgotten; the watch has not shown the deletions yet: nothing is done.
    let (res, _) = run_steps(&ctx, handle, c, vec![]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(1)));
    assert!(ctx.canaries.all(UID).is_empty());
}

/// A canary the API server refuses (quota) is a ProbeNotCreated result of its run, not an
/// error that retries the reconcile for ever.
#[tokio::test]
async fn refused_canary_is_a_probe_not_created_result() {
    let Setup { ctx, handle } = setup(config());
    let c = kubelet_check();
    let mut refused = step(
        Method::POST,
        format!("/api/v1/namespaces/{NS}/pods"),
        403,
        Some(status_error(403, "Forbidden")),
    );
    refused.check =
        Box::new(|b| assert_eq!(b["metadata"]["labels"]["regcheck.dev/context"], "kubelet"));
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        refused,
        create_canary(),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    let settled = ctx.canaries.all(UID);
    assert_eq!(settled.len(), 1);
    assert!(settled[0].member.done);
    assert!(matches!(
        &settled[0].record.outcome,
        ProbeOutcome::Failed { reason: Reason::ProbeNotCreated, message } if message.contains("mock Forbidden")
    ));
}

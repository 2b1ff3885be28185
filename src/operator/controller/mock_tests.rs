//! Reconcile tests against a mocked API server (kube's `tower_test::mock::pair`): each
//! [`Scenario`] is an exact sequence of requests (method, path, query and the body fields that
//! matter) that a verifier task expects and answers like the API server would; a timeout on
//! the verifier proves that every expected call happened.

use super::*;
use crate::operator::crd::RegistryConnectivityCheckSpec;
use crate::operator::nodes::NodeInfo;
use crate::operator::spec::ValidSpec;
use ::http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "team-a";
const PROBE_NS: &str = "regcheck-system";
const UID: &str = "0f0e0d0c-0000-4000-8000-00000000abcd";
const CHECKS: &str = "/apis/regcheck.dev/v1alpha1/namespaces/team-a/registryconnectivitychecks/acr";
const HEALTHY: &str = include_str!("testdata/healthy-report.json");
const TIMEOUT: &str = include_str!("testdata/timeout-report.json");

fn config() -> Config {
    Config {
        probe_image: "ghcr.io/regcheck/regcheck:test".into(),
        probe_image_pull_policy: "IfNotPresent".into(),
        probe_namespace: PROBE_NS.into(),
        namespaces: vec![],
        max_concurrent_jobs: 50,
        node_proxy: None,
        node_no_proxy: None,
        policy: PolicyConfig::default(),
        // Every run lists the nodes (the cache has its own test).
        node_cache_ttl: Duration::ZERO,
        probe_image_platforms: Default::default(),
        observe_pull_failures: false,
        max_concurrent_reconciles: MAX_CONCURRENT_RECONCILES,
        max_probe_jobs_in_flight: 0,
        node_host_files: Default::default(),
    }
}

fn check(generation: i64, spec: Value) -> RegistryConnectivityCheck {
    let mut base = json!({"registry": "r.azurecr.io", "failureThreshold": 1});
    if let (Some(b), Some(s)) = (base.as_object_mut(), spec.as_object()) {
        b.extend(s.clone());
    }
    let spec: RegistryConnectivityCheckSpec = serde_json::from_value(base).unwrap();
    let mut c = RegistryConnectivityCheck::new("acr", spec);
    c.metadata.namespace = Some(NS.into());
    c.metadata.uid = Some(UID.into());
    c.metadata.generation = Some(generation);
    c.metadata.resource_version = Some("100".into());
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c
}

fn node(name: &str, pool: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/os": "linux",
            "kubernetes.azure.com/agentpool": pool,
            "topology.kubernetes.io/zone": "z1"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn nodes() -> Vec<Value> {
    vec![node("aks-sys-0", "sys"), node("aks-user-0", "user")]
}

fn node_infos() -> NodeInventory {
    NodeInventory::new(
        nodes()
            .into_iter()
            .map(|n| NodeInfo::from_node(&serde_json::from_value(n).unwrap()))
            .collect(),
    )
}

/// The node context's plan of run `run` of `c` on [`node_infos`].
fn targets(c: &RegistryConnectivityCheck, run: u64) -> Vec<Target> {
    node_infos().plan(&c.spec.contexts.node, run)
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn status_error(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
           "message": format!("mock {reason}"), "reason": reason, "code": code})
}

/// The Jobs of run `run` as the API server returns them: created, with a state.
fn jobs_of(c: &RegistryConnectivityCheck, run: u64, state: &str) -> Vec<Job> {
    plan_jobs(
        c,
        &ValidSpec::parse(&c.spec).unwrap(),
        &node_infos(),
        &targets(c, run),
        run,
        &config(),
    )
    .into_iter()
    .map(|(_, mut j)| {
        j.metadata.uid = Some(format!("job-{}", j.name_any()));
        j.metadata.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
        j.status = Some(
            serde_json::from_value(match state {
                "complete" => json!({"succeeded": 1, "completionTime": "2024-01-01T00:00:20Z",
                    "conditions": [{"type": "Complete", "status": "True",
                                    "lastTransitionTime": "2024-01-01T00:00:20Z"}]}),
                _ => json!({"active": 1}),
            })
            .unwrap(),
        );
        j
    })
    .collect()
}

/// The pod of a Job: `message` is the termination message of a finished probe, `None` a pod
/// that is still pending, unschedulable.
fn pod_of_job(j: &Job, message: Option<&str>) -> Value {
    let labels = j
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    let status = match message {
        Some(m) => json!({"phase": "Succeeded", "containerStatuses": [{
            "name": "probe", "image": "x", "imageID": "x", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": m}}}]}),
        None => json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available"}]}),
    };
    // The Job controller copies the template's spec into the pod.
    let spec = &j.spec.as_ref().unwrap().template.spec;
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-x1", j.name_any()), "namespace": j.namespace(),
            "labels": labels,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": j.name_any(),
                                 "uid": j.metadata.uid, "controller": true}]},
        "spec": spec,
        "status": status
    })
}

type BodyCheck = Box<dyn Fn(&Value) + Send>;

/// One request the API server expects, and its answer.
struct Step {
    method: Method,
    path: String,
    /// `key=value` pairs that the (decoded) query must contain.
    query: Vec<String>,
    check: BodyCheck,
    code: u16,
    /// `None`: answer with the request body (create, apply).
    reply: Option<Value>,
    /// Applied to the reply (e.g. to merge an applied status into the object).
    shape: Option<Box<dyn Fn(Value) -> Value + Send>>,
}

fn step(method: Method, path: impl Into<String>, code: u16, reply: Option<Value>) -> Step {
    Step {
        method,
        path: path.into(),
        query: vec![],
        check: Box::new(|_| {}),
        code,
        reply,
        shape: None,
    }
}

impl Step {
    fn query(mut self, q: &str) -> Self {
        self.query.push(q.to_string());
        self
    }
    fn body(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Box::new(f);
        self
    }
}

fn sel_uid() -> String {
    format!("labelSelector=regcheck.dev/check-uid={UID}")
}
fn sel_run(run: &str) -> String {
    format!("labelSelector=regcheck.dev/check-uid={UID},regcheck.dev/run={run}")
}

/// Puts Jobs and pods (as JSON) into the controller's watch caches.
fn cache(ctx: &Context, jobs: &[Job], pods: &[Value]) {
    let pods: Vec<Pod> = pods
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect();
    ctx.caches.fill(jobs, &pods);
}

fn list_nodes() -> Step {
    step(
        Method::GET,
        "/api/v1/nodes",
        200,
        Some(list("NodeList", "v1", nodes())),
    )
    .query(&format!("limit={}", node_cache::PAGE_SIZE))
}

fn create_job(ns: &str, run: &str, context: &str, code: u16) -> Step {
    let (run, context, ns_owned) = (run.to_string(), context.to_string(), ns.to_string());
    let reply = (code >= 300).then(|| {
        status_error(
            code,
            match code {
                409 => "AlreadyExists",
                429 => "TooManyRequests",
                _ => "InternalError",
            },
        )
    });
    step(
        Method::POST,
        format!("/apis/batch/v1/namespaces/{ns}/jobs"),
        code,
        reply,
    )
    .body(move |b| {
        assert_eq!(b["metadata"]["namespace"], ns_owned.as_str());
        assert_eq!(b["metadata"]["labels"]["regcheck.dev/run"], run.as_str());
        assert_eq!(
            b["metadata"]["labels"]["regcheck.dev/context"],
            context.as_str()
        );
        assert_eq!(b["metadata"]["labels"]["regcheck.dev/check-uid"], UID);
        let pod = &b["spec"]["template"]["spec"];
        assert_eq!(
            pod["hostNetwork"].as_bool(),
            (context == "node").then_some(true)
        );
    })
}

fn delete_jobs(ns: &str, selector: String) -> Step {
    step(
        Method::DELETE,
        format!("/apis/batch/v1/namespaces/{ns}/jobs"),
        200,
        Some(list("JobList", "batch/v1", vec![])),
    )
    .query(&selector)
    .body(|b| assert_eq!(b["propagationPolicy"], "Background"))
}

fn patch_status(check: impl Fn(&Value) + Send + 'static) -> Step {
    let mut s = step(Method::PATCH, format!("{CHECKS}/status"), 200, None);
    // The server answers with the whole object.
    s.shape = Some(Box::new(|applied| {
        let mut obj = serde_json::to_value(self::check(1, json!({}))).unwrap();
        obj["status"] = applied["status"].clone();
        obj
    }));
    s.query("fieldManager=regcheck-controller")
        .query("force=true")
        .body(move |b| {
            assert_eq!(b["kind"], "RegistryConnectivityCheck");
            assert_eq!(b["apiVersion"], "regcheck.dev/v1alpha1");
            check(&b["status"])
        })
}

fn event(type_: &'static str, reason: &'static str) -> Step {
    step(
        Method::POST,
        format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
        201,
        None,
    )
    .body(move |b| {
        assert_eq!(b["type"], type_);
        assert_eq!(b["reason"], reason);
        assert_eq!(b["regarding"]["name"], "acr");
        assert_eq!(b["regarding"]["kind"], "RegistryConnectivityCheck");
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

/// Answers the requests of `steps` in order, checking each; returns after the last one.
async fn verify(handle: &mut Handle, steps: Vec<Step>) {
    for (i, s) in steps.into_iter().enumerate() {
        let (req, send) = handle.next_request().await.unwrap_or_else(|| {
            panic!(
                "step {i}: the client went away before {} {}",
                s.method, s.path
            )
        });
        let what = format!("step {i}: {} {}", req.method(), req.uri());
        assert_eq!(req.method(), s.method, "{what}");
        assert_eq!(req.uri().path(), s.path, "{what}");
        let query: Vec<String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        for q in &s.query {
            assert!(query.contains(q), "{what}: query lacks {q}: {query:?}");
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: body: {e}"))
        };
        (s.check)(&body);
        let mut reply = s.reply.unwrap_or_else(|| body.clone());
        if let Some(shape) = &s.shape {
            reply = shape(reply);
        }
        if s.code < 300 && reply["metadata"].is_object() && reply["metadata"]["uid"].is_null() {
            reply["metadata"]["uid"] = json!(format!("uid-{i}"));
        }
        send.send_response(
            Response::builder()
                .status(s.code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }
}

/// The cases of the issue, each an exact request sequence.
enum Scenario {
    /// No finalizer yet: it is added; then the run starts (list Jobs, Nodes, create Jobs).
    FirstRun,
    /// Every probe of r1 finished: pods read, status written, Event, Jobs deleted.
    ResultsArrive,
    /// The only probe's pod cannot be scheduled.
    ProbeUnschedulable,
    /// Generation 2 while r2 of generation 1 runs: r2's Jobs go, r3 starts.
    SpecChangeMidRun,
    /// Deleted: Jobs in both namespaces go, then the finalizer.
    Deletion,
    /// The controller restarted while r1 runs: nothing is created again.
    RestartMidRun,
    /// A Job of the run exists already (409): fine.
    CreateConflict,
}

struct Setup {
    ctx: Arc<Context>,
    handle: Handle,
}

fn setup(cfg: Config) -> Setup {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let ctx = Arc::new(Context::new(client, cfg, Arc::new(metrics::Metrics::new())));
    // As after the watches' first lists (an empty cluster unless a test fills the caches).
    ctx.caches.set_ready();
    Setup { ctx, handle }
}

/// Runs `reconcile` on `obj` while the verifier answers `steps`. A request beyond `steps`
/// gets no answer, so reconcile times out; a missing one times the verifier out.
async fn run_steps(
    ctx: &Arc<Context>,
    handle: Handle,
    obj: RegistryConnectivityCheck,
    steps: Vec<Step>,
) -> (Result<Requeue, Error>, Handle) {
    let verifier = tokio::spawn(async move {
        let mut handle = handle;
        verify(&mut handle, steps).await;
        handle
    });
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        // Boxed: the reconcile future is large in debug builds (the test thread stack is 2 MiB).
        Box::pin(reconcile(Arc::new(StoredCheck::from(&obj)), ctx.clone())),
    )
    .await
    .expect("reconcile hung: it made a request that was not expected");
    let handle = tokio::time::timeout(Duration::from_secs(10), verifier)
        .await
        .expect("timeout: not every expected request was made")
        .expect("the verifier failed");
    (res, handle)
}

fn sorted_contexts(jobs: &[Job]) -> Vec<(String, String)> {
    jobs.iter()
        .map(|j| (j.namespace().unwrap(), j.labels()[labels::CONTEXT].clone()))
        .collect()
}

impl Scenario {
    async fn run(self) {
        match self {
            Scenario::FirstRun => {
                let Setup { ctx, handle } = setup(config());
                let mut fresh = check(1, json!({}));
                fresh.metadata.finalizers = None;
                let with_finalizer = check(1, json!({}));
                let reply = serde_json::to_value(&with_finalizer).unwrap();
                let steps = vec![step(Method::PATCH, CHECKS, 200, Some(reply)).body(|b| {
                    let ops = b.as_array().expect("a JSON patch");
                    assert!(
                        ops.iter().any(|o| o["op"] == "add"
                            && o["path"] == "/metadata/finalizers"
                            && o["value"] == json!([FINALIZER])),
                        "{b}"
                    );
                })];
                let (res, handle) = run_steps(&ctx, handle, fresh, steps).await;
                res.unwrap();
                let steps = vec![
                    list_nodes(),
                    create_job(PROBE_NS, "r1", "node", 201).body(|b| {
                        // The probe image's architectures (default linux/amd64, linux/arm64).
                        let term = &b["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
                            ["requiredDuringSchedulingIgnoredDuringExecution"]
                            ["nodeSelectorTerms"][0]["matchExpressions"][0];
                        assert_eq!(term["key"], "kubernetes.io/arch", "{b}");
                        assert_eq!(term["operator"], "In");
                        assert_eq!(term["values"], json!(["amd64", "arm64"]));
                    }),
                    create_job(PROBE_NS, "r1", "node", 201),
                    create_job(NS, "r1", "pod", 201),
                    create_job(NS, "r1", "pod", 201),
                ];
                let (res, handle) = run_steps(&ctx, handle, with_finalizer.clone(), steps).await;
                assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
                assert!(
                    ctx.metrics
                        .render()
                        .contains(r#"regcheck_probe_jobs_created_total{context="pod"} 2"#)
                );
                // Triggered again before the watch shows any of the new Jobs: nothing is
                // created again (planning the run needs the nodes).
                let (res, handle) =
                    run_steps(&ctx, handle, with_finalizer.clone(), vec![list_nodes()]).await;
                assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
                // The watch shows one of them: the run is topped up with none of the others
                // (planning it needs the nodes).
                let first: Vec<Job> = jobs_of(&with_finalizer, 1, "active")
                    .into_iter()
                    .take(1)
                    .collect();
                cache(&ctx, &first, &[]);
                let (res, _) = run_steps(&ctx, handle, with_finalizer, vec![list_nodes()]).await;
                assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
            }
            Scenario::ResultsArrive => {
                let Setup { ctx, handle } = setup(config());
                let c = check(1, json!({}));
                let jobs = jobs_of(&c, 1, "complete");
                assert_eq!(
                    sorted_contexts(&jobs),
                    [
                        (PROBE_NS.into(), "node".into()),
                        (PROBE_NS.into(), "node".into()),
                        (NS.into(), "pod".into()),
                        (NS.into(), "pod".into())
                    ]
                );
                // Node network healthy everywhere; the pod network of aks-user-0 times out.
                let pods: Vec<Value> = jobs
                    .iter()
                    .map(|j| {
                        let bad = j.labels()[labels::CONTEXT] == "pod"
                            && j.labels()[labels::NODE] == "aks-user-0";
                        pod_of_job(j, Some(if bad { TIMEOUT } else { HEALTHY }))
                    })
                    .collect();
                // The pods of another run and another check are not this run's.
                let mut others = pods.clone();
                for p in &mut others {
                    p["metadata"]["name"] = json!(format!("{}-r9", p["metadata"]["name"]));
                    p["metadata"]["labels"]["regcheck.dev/run"] = json!("r9");
                }
                let mut foreign = pods.clone();
                for p in &mut foreign {
                    p["metadata"]["name"] = json!(format!("{}-other", p["metadata"]["name"]));
                    p["metadata"]["labels"]["regcheck.dev/check-uid"] = json!("other");
                    p["status"] = json!({"phase": "Running"});
                }
                cache(&ctx, &jobs, &[pods.clone(), others, foreign].concat());
                let steps = vec![
                    patch_status(|s| {
                        let ready = condition(s, "Ready");
                        assert_eq!(ready["status"], "False", "{s}");
                        assert_eq!(ready["reason"], "ConnectionTimedOut");
                        assert_eq!(s["diagnosis"]["reason"], "ConnectionTimedOut");
                        assert_eq!(s["diagnosis"]["context"], "Pod");
                        assert_eq!(s["diagnosis"]["node"], "aks-user-0");
                        assert_eq!(condition(s, "ContextsConsistent")["status"], "False");
                        assert_eq!(
                            condition(s, "ContextsConsistent")["reason"],
                            "ContextsDisagree"
                        );
                        assert_eq!(condition(s, "ProbesHealthy")["status"], "True");
                        assert_eq!(condition(s, "RegistryReachable")["status"], "False");
                        assert_eq!(s["lastRun"]["id"], "r1");
                        assert_eq!(s["lastRun"]["durationMs"], 20_000);
                        assert_eq!(s["observedGeneration"], 1);
                        assert_eq!(s["consecutiveFailures"], 1);
                        assert_eq!(s["counts"]["nodesChecked"], 2);
                        assert_eq!(s["counts"]["nodesFailing"], 1);
                        assert_eq!(s["counts"]["probes"], 4);
                        assert_eq!(s["results"].as_array().unwrap().len(), 4);
                        assert_eq!(s["results"][0]["nodePool"], "user");
                    }),
                    event("Warning", "ConnectionTimedOut"),
                    delete_jobs(PROBE_NS, sel_run("r1")),
                    delete_jobs(NS, sel_run("r1")),
                ];
                let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
                let requeue = res.unwrap();
                // The watches have not delivered the status nor the deletions yet: the cached
                // check and Jobs predate the collected run, which is neither collected nor
                // started again.
                let (res, _) = run_steps(&ctx, handle, c, vec![]).await;
                assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(1)));
                // The next run is due an interval (plus jitter) after this one started, which
                // is long past: it starts at once.
                assert_eq!(requeue, Requeue::requeue(Duration::from_secs(1)));
                let m = ctx.metrics.render();
                for want in [
                    r#"regcheck_runs_total{result="unreachable"} 1"#,
                    r#"regcheck_check_ready{namespace="team-a",name="acr"} 0"#,
                    r#"regcheck_check_failing_nodes{namespace="team-a",name="acr"} 1"#,
                    r#"regcheck_probe_phase_duration_seconds_count{context="node",phase="tls"} 2"#,
                ] {
                    assert!(m.lines().any(|l| l == want), "{want} in\n{m}");
                }
            }
            Scenario::ProbeUnschedulable => {
                let Setup { ctx, handle } = setup(config());
                let c = check(
                    1,
                    json!({"contexts": {"pod": {"enabled": false}},
                    "interval": "1h"}),
                );
                let jobs: Vec<Job> = jobs_of(&c, 1, "active").into_iter().take(1).collect();
                let mut j = jobs[0].clone();
                // Planned with one node only.
                j.annotations_mut()
                    .insert(run_ann::RUN_SIZE.into(), "1".into());
                cache(&ctx, std::slice::from_ref(&j), &[pod_of_job(&j, None)]);
                let steps = vec![
                    patch_status(|s| {
                        let probes = condition(s, "ProbesHealthy");
                        assert_eq!(probes["status"], "False", "{s}");
                        assert_eq!(probes["reason"], "ProbeUnschedulable");
                        assert_eq!(condition(s, "Ready")["status"], "Unknown");
                        assert_eq!(s["diagnosis"]["reason"], "ProbeUnschedulable");
                        assert_eq!(s["consecutiveFailures"], 0);
                    }),
                    event("Warning", "ProbeUnschedulable"),
                    delete_jobs(PROBE_NS, sel_run("r1")),
                ];
                let (res, _) = run_steps(&ctx, handle, c, steps).await;
                assert!(matches!(res.unwrap(), r if r != Requeue::await_change()));
                let m = ctx.metrics.render();
                assert!(
                    m.contains(r#"regcheck_check_ready{namespace="team-a",name="acr"} -1"#),
                    "{m}"
                );
                assert!(
                    m.contains(r#"regcheck_runs_total{result="probe_failed"} 1"#),
                    "{m}"
                );
            }
            Scenario::SpecChangeMidRun => {
                let Setup { ctx, handle } = setup(config());
                let old = check(1, json!({}));
                let mut c = check(2, json!({"timeoutSeconds": 20}));
                c.status = Some(RegistryConnectivityCheckStatus {
                    observed_generation: Some(1),
                    last_run: Some(RunInfo {
                        id: "r1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                let running = jobs_of(&old, 2, "active");
                cache(&ctx, &running, &[]);
                let steps = vec![
                    delete_jobs(PROBE_NS, sel_run("r2")),
                    delete_jobs(NS, sel_run("r2")),
                    list_nodes(),
                    create_job(PROBE_NS, "r3", "node", 201).body(|b| {
                        assert_eq!(b["metadata"]["annotations"]["regcheck.dev/generation"], "2");
                        let args =
                            b["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
                        assert!(args.contains(r#""--timeout","20s""#), "{args}");
                    }),
                    create_job(PROBE_NS, "r3", "node", 201),
                    create_job(NS, "r3", "pod", 201),
                    create_job(NS, "r3", "pod", 201),
                ];
                let (res, _) = run_steps(&ctx, handle, c, steps).await;
                res.unwrap();
            }
            Scenario::Deletion => {
                let Setup { ctx, handle } = setup(config());
                let mut c = check(1, json!({}));
                c.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
                let mut gone = c.clone();
                gone.metadata.finalizers = None;
                let steps = vec![
                    delete_jobs(PROBE_NS, sel_uid()),
                    delete_jobs(NS, sel_uid()),
                    step(
                        Method::PATCH,
                        CHECKS,
                        200,
                        Some(serde_json::to_value(&gone).unwrap()),
                    )
                    .body(|b| {
                        let ops = b.as_array().expect("a JSON patch");
                        assert!(
                            ops.iter()
                                .any(|o| o["op"] == "remove"
                                    && o["path"] == "/metadata/finalizers/0"),
                            "{b}"
                        );
                    }),
                ];
                let (res, _) = run_steps(&ctx, handle, c, steps).await;
                assert_eq!(res.unwrap(), Requeue::await_change());
            }
            Scenario::RestartMidRun => {
                let Setup { ctx, handle } = setup(config());
                let c = check(1, json!({}));
                let jobs = jobs_of(&c, 1, "active");
                let pods: Vec<Value> = jobs
                    .iter()
                    .map(|j| {
                        let mut p = pod_of_job(j, None);
                        p["status"] = json!({"phase": "Running", "containerStatuses": [{
                            "name": "probe", "image": "x", "imageID": "x", "ready": true,
                            "restartCount": 0, "state": {"running": {}}}]});
                        p
                    })
                    .collect();
                cache(&ctx, &jobs, &pods);
                // All from the caches: not one request.
                let (res, _) = run_steps(&ctx, handle, c, vec![]).await;
                assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
                assert!(!ctx.metrics.render().contains("probe_jobs_created_total{"));
            }
            Scenario::CreateConflict => {
                let Setup { ctx, handle } = setup(config());
                let steps = vec![
                    list_nodes(),
                    create_job(PROBE_NS, "r1", "node", 409),
                    create_job(PROBE_NS, "r1", "node", 201),
                    create_job(NS, "r1", "pod", 201),
                    create_job(NS, "r1", "pod", 201),
                ];
                let (res, _) = run_steps(&ctx, handle, check(1, json!({})), steps).await;
                assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
                let m = ctx.metrics.render();
                assert!(
                    m.contains(r#"regcheck_probe_jobs_created_total{context="node"} 1"#),
                    "{m}"
                );
            }
        }
    }
}

#[tokio::test]
async fn first_run() {
    Scenario::FirstRun.run().await;
}

#[tokio::test]
async fn results_arrive() {
    Scenario::ResultsArrive.run().await;
}

/// Nodes the probe cannot run on are skipped with the reason in the status; with none left,
/// the run ends as ProbeUnschedulable naming what is missing.
#[tokio::test]
async fn skipped_nodes_reach_the_status() {
    let Setup { ctx, handle } = setup(config());
    let with = |name: &str, labels: Value, taints: Value| {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        })
    };
    let items = vec![
        with(
            "aks-s390-0",
            json!({"kubernetes.io/os": "linux", "kubernetes.io/arch": "s390x"}),
            json!([]),
        ),
        with(
            "aksnpwin000000",
            json!({"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"}),
            json!([]),
        ),
        with(
            "virtual-node-aci-linux",
            json!({"kubernetes.io/os": "linux", "type": "virtual-kubelet"}),
            json!([{"key": "virtual-kubelet.io/provider", "value": "azure", "effect": "NoSchedule"}]),
        ),
    ];
    let steps = vec![
        step(
            Method::GET,
            "/api/v1/nodes",
            200,
            Some(list("NodeList", "v1", items)),
        ),
        patch_status(|s| {
            assert_eq!(s["skippedNodeCount"], 3, "{s}");
            let skipped = s["skippedNodes"].as_array().unwrap();
            let got: Vec<(String, String)> = skipped
                .iter()
                .map(|n| {
                    (
                        n["node"].as_str().unwrap().to_string(),
                        n["reason"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        "aks-s390-0".to_string(),
                        "PlatformNotInProbeImage".to_string()
                    ),
                    ("aksnpwin000000".into(), "NotLinux".into()),
                    ("virtual-node-aci-linux".into(), "VirtualKubelet".into()),
                ]
            );
            assert!(
                skipped[0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("linux/s390x"),
                "{s}"
            );
            assert_eq!(s["diagnosis"]["reason"], "ProbeUnschedulable");
            let msg = s["diagnosis"]["message"].as_str().unwrap();
            assert!(msg.contains("linux/amd64,linux/arm64"), "{msg}");
            assert!(
                msg.contains("aks-s390-0: the probe image has no linux/s390x"),
                "{msg}"
            );
        }),
        event("Warning", "ProbeUnschedulable"),
    ];
    let (res, _) = run_steps(&ctx, handle, check(1, json!({})), steps).await;
    res.unwrap();
}

#[tokio::test]
async fn probe_unschedulable() {
    Scenario::ProbeUnschedulable.run().await;
}

#[tokio::test]
async fn spec_change_mid_run() {
    Scenario::SpecChangeMidRun.run().await;
}

#[tokio::test]
async fn deletion() {
    Scenario::Deletion.run().await;
}

#[tokio::test]
async fn restart_mid_run() {
    Scenario::RestartMidRun.run().await;
}

#[tokio::test]
async fn conflict_on_create_is_treated_as_exists() {
    Scenario::CreateConflict.run().await;
}

/// 429 on listing the nodes: reconcile fails, the error policy counts it and retries soon;
/// the retry does the whole first run.
#[tokio::test]
async fn throttled_is_retried() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({}));
    let steps = vec![step(
        Method::GET,
        "/api/v1/nodes",
        429,
        Some(status_error(429, "TooManyRequests")),
    )];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    let err = res.unwrap_err();
    assert_eq!(err.metric_label(), "list_nodes");
    let requeue = error_policy(Arc::new(StoredCheck::from(&c)), &err, ctx.clone());
    assert_eq!(requeue, Requeue::requeue(Duration::from_secs(5)));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_reconcile_errors_total{error="list_nodes"} 1"#)
    );
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

/// 500 in the middle of creating a run's Jobs: reconcile fails and is retried; the retry finds
/// the Job that was created, and creates only the missing ones of the same run.
#[tokio::test]
async fn server_error_mid_run_resumes_without_duplicates() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({}));
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 500),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    let err = res.unwrap_err();
    assert_eq!(err.metric_label(), "create_job");
    assert_eq!(
        error_policy(Arc::new(StoredCheck::from(&c)), &err, ctx.clone()),
        Requeue::requeue(Duration::from_secs(15))
    );
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_reconcile_errors_total{error="create_job"} 1"#)
    );

    let first: Vec<Job> = jobs_of(&c, 1, "active").into_iter().take(1).collect();
    // The watch has delivered the one Job that was created (its pod not yet).
    cache(&ctx, &first, &[]);
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201).body(|b| {
            assert_eq!(b["metadata"]["labels"]["regcheck.dev/node"], "aks-user-0");
        }),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
}

/// An invalid spec: no Jobs, `Ready=False` with `InvalidSpec`, an Event; the same spec again
/// writes nothing.
#[tokio::test]
async fn invalid_spec_is_reported_not_retried() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({"interval": "10s"}));
    let steps = vec![
        patch_status(|s| {
            let ready = condition(s, "Ready");
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "InvalidSpec");
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .contains("spec.interval: '10s'")
            );
        }),
        event("Warning", "InvalidSpec"),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::await_change());
    // With that status in place, nothing is requested.
    let mut again = c;
    let now = Time(Timestamp::now());
    again.status = Some(invalid_status(
        &Default::default(),
        Some(1),
        &crate::operator::spec::ValidSpec::parse(&again.spec)
            .unwrap_err()
            .to_string(),
        &now,
    ));
    let steps = vec![];
    let (res, _) = run_steps(&ctx, handle, again, steps).await;
    assert_eq!(res.unwrap(), Requeue::await_change());
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_runs_total{result="invalid_spec"} 1"#)
    );
}

#[test]
fn node_proxy_is_passed_to_inherit_node_probes_only() {
    let mut cfg = config();
    cfg.node_proxy = Some("http://10.0.0.9:3128".into());
    cfg.node_no_proxy = Some(".svc,10.0.0.0/8".into());
    cfg.probe_image_pull_policy = "Always".into();
    let c = check(1, json!({}));
    let jobs = plan_jobs(
        &c,
        &ValidSpec::parse(&c.spec).unwrap(),
        &node_infos(),
        &targets(&c, 1),
        1,
        &cfg,
    );
    for (ctx, j) in &jobs {
        let container = &j
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
        let args = container.args.as_ref().unwrap().join(" ");
        let has = args.contains("--proxy http://10.0.0.9:3128 --proxy-bypass .svc,10.0.0.0/8");
        assert_eq!(has, *ctx == ProbeContext::Node, "{args}");
        let ann = j.annotations();
        assert_eq!(ann[run_ann::RUN_SIZE], "4");
        assert_eq!(ann[run_ann::GENERATION], "1");
        assert_eq!(ann[run_ann::ZONE], "z1");
    }
    let mut explicit = c.clone();
    explicit.spec.proxy.mode = ProxyMode::None;
    for (_, j) in plan_jobs(
        &explicit,
        &ValidSpec::parse(&explicit.spec).unwrap(),
        &node_infos(),
        &targets(&explicit, 1),
        1,
        &cfg,
    ) {
        let args = j.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(!args.contains(&"http://10.0.0.9:3128".to_string()));
    }
}

/// Node probes mount containerd's host config, its drop-ins (proxy mode Inherit only) and the
/// host's resolv.conf read-only, and use them; pod probes mount nothing of the host.
#[test]
fn node_probes_mount_the_host_files_read_only_pod_probes_none() {
    let cfg = config();
    let c = check(1, json!({}));
    let spec = ValidSpec::parse(&c.spec).unwrap();
    let jobs = plan_jobs(&c, &spec, &node_infos(), &targets(&c, 1), 1, &cfg);
    assert!(jobs.iter().any(|(ctx, _)| *ctx == ProbeContext::Pod));
    for (ctx, j) in &jobs {
        let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let args = container.args.as_ref().unwrap().join(" ");
        let host_paths: Vec<(String, Option<String>)> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.host_path.as_ref())
            .map(|h| (h.path.clone(), h.type_.clone()))
            .collect();
        if *ctx == ProbeContext::Pod {
            assert!(host_paths.is_empty(), "{host_paths:?}");
            assert!(!args.contains("/host"), "{args}");
            continue;
        }
        assert_eq!(
            host_paths,
            vec![
                ("/etc/containerd/certs.d".to_string(), None),
                ("/etc/systemd/system/containerd.service.d".to_string(), None),
                ("/etc/resolv.conf".to_string(), Some("File".to_string())),
            ]
        );
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 3);
        assert!(
            mounts
                .iter()
                .all(|m| m.read_only == Some(true) && m.mount_path.starts_with("/host/"))
        );
        for want in [
            "--containerd-config-dir /host/etc/containerd/certs.d --host-root /host",
            "--runtime-proxy-from /host/etc/systemd/system/containerd.service.d",
            "--host-resolv-conf /host/etc/resolv.conf",
        ] {
            assert!(args.contains(want), "{want} in {args}");
        }
    }
    // Proxy mode None: containerd's drop-ins do not matter, they are not mounted.
    let mut none = c.clone();
    none.spec.proxy.mode = ProxyMode::None;
    let (_, j) = plan_jobs(
        &none,
        &ValidSpec::parse(&none.spec).unwrap(),
        &node_infos(),
        &targets(&none, 1),
        1,
        &cfg,
    )
    .remove(0);
    let pod = j.spec.unwrap().template.spec.unwrap();
    let paths: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect();
    assert_eq!(paths, ["/etc/containerd/certs.d", "/etc/resolv.conf"]);
    assert!(
        !pod.containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--runtime-proxy-from".to_string())
    );
    // Everything disabled: nothing of the host is mounted.
    let mut off = cfg.clone();
    off.node_host_files = jobs::NodeHostFiles {
        containerd_config_dir: None,
        containerd_dropin_dir: None,
        resolv_conf: None,
    };
    for (_, j) in plan_jobs(&c, &spec, &node_infos(), &targets(&c, 1), 1, &off) {
        let pod = j.spec.unwrap().template.spec.unwrap();
        assert!(pod.volumes.iter().flatten().all(|v| v.host_path.is_none()));
        assert!(
            !pod.containers[0]
                .args
                .as_ref()
                .unwrap()
                .join(" ")
                .contains("/host")
        );
    }
}

#[test]
fn jobs_map_back_to_their_check() {
    let c = check(1, json!({}));
    let (_, j) = plan_jobs(
        &c,
        &ValidSpec::parse(&c.spec).unwrap(),
        &node_infos(),
        &targets(&c, 1),
        1,
        &config(),
    )
    .remove(0);
    let r = check_of_job(&j).unwrap();
    assert_eq!(r.name, "acr");
    assert_eq!(r.namespace.as_deref(), Some(NS));
    let mut labels_only = j.clone();
    labels_only.metadata.annotations = None;
    assert_eq!(check_of_job(&labels_only), Some(r));
    let mut none = j;
    none.metadata.annotations = None;
    none.metadata.labels = Some(BTreeMap::new());
    assert_eq!(check_of_job(&none), None);
}

#[test]
fn status_equality_ignores_timestamps_only() {
    let t = |s: i64| Time(Timestamp::from_second(1_700_000_000 + s).unwrap());
    let a = invalid_status(&Default::default(), Some(1), "spec.interval: bad", &t(0));
    let b = invalid_status(&Default::default(), Some(1), "spec.interval: bad", &t(50));
    assert!(same_except_timestamps(&a, &b));
    let c = invalid_status(&Default::default(), Some(2), "spec.interval: bad", &t(0));
    assert!(!same_except_timestamps(&a, &c));
    // lastTransitionTime stays while the status does not change.
    let again = invalid_status(&a, Some(1), "spec.interval: worse", &t(100));
    assert_eq!(again.conditions[0].last_transition_time, t(0));
}

#[test]
fn events_only_on_transitions() {
    let t = Time(Timestamp::from_second(1_700_000_000).unwrap());
    let cond = |status: &str, reason: &str| Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: "m".into(),
        observed_generation: Some(1),
        last_transition_time: t.clone(),
    };
    let st = |status: &str, reason: &str| RegistryConnectivityCheckStatus {
        conditions: vec![cond(status, reason)],
        diagnosis: Some(crate::operator::crd::Diagnosis {
            reason: reason.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let none = RegistryConnectivityCheckStatus::default();
    let ev = transition_event(&none, &st("True", "Healthy")).unwrap();
    assert_eq!((ev.reason.as_str(), ev.type_), ("Ready", EventType::Normal));
    let ev = transition_event(&st("True", "Healthy"), &st("False", "DNSNameNotFound")).unwrap();
    assert_eq!(
        (ev.reason.as_str(), ev.type_),
        ("DNSNameNotFound", EventType::Warning)
    );
    let ev = transition_event(
        &st("False", "DNSNameNotFound"),
        &st("False", "ConnectionTimedOut"),
    )
    .unwrap();
    assert_eq!(ev.reason, "DiagnosisChanged");
    assert!(transition_event(&st("False", "X"), &st("False", "X")).is_none());
    // A failure below failureThreshold is announced, but not as a warning.
    let ev = transition_event(&none, &st("Unknown", "AwaitingThreshold")).unwrap();
    assert_eq!(
        (ev.reason.as_str(), ev.type_),
        ("AwaitingThreshold", EventType::Normal)
    );
    // A broken probe is a warning named after the probe's failure.
    let ev =
        transition_event(&st("True", "Healthy"), &st("Unknown", "ProbeUnschedulable")).unwrap();
    assert_eq!(
        (ev.reason.as_str(), ev.type_),
        ("ProbeUnschedulable", EventType::Warning)
    );
}

// ---------------------------------------------------------------------------------------------
// Target policy

fn with_policy(ns: &str, registries: &str, ports: &str, proxies: &str) -> Config {
    Config {
        policy: PolicyConfig::parse(ns, registries, ports, proxies).unwrap(),
        ..config()
    }
}

/// A registry outside `--allowed-registries`: the Jobs the check had go, `Ready=False
/// TargetNotAllowed` names the rule, one Event, counted as `invalid_spec`, and the check is
/// looked at again after its interval; the same refusal again writes nothing.
#[tokio::test]
async fn policy_refusal_deletes_jobs_and_reports_the_rule() {
    let Setup { ctx, handle } = setup(with_policy("*", "*.example.com", "443", "*"));
    let c = check(1, json!({"interval": "7m"}));
    let running = jobs_of(&c, 1, "active");
    cache(&ctx, &running, &[]);
    let steps = vec![
        delete_jobs(PROBE_NS, sel_uid()),
        delete_jobs(NS, sel_uid()),
        patch_status(|s| {
            let ready = condition(s, "Ready");
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "TargetNotAllowed");
            let m = ready["message"].as_str().unwrap();
            assert!(m.starts_with("allowed-registries: "), "{m}");
            assert!(m.contains("r.azurecr.io"), "{m}");
            assert!(m.contains("--allowed-registries=*.example.com"), "{m}");
            assert_eq!(s["diagnosis"]["reason"], "TargetNotAllowed");
            assert_eq!(s["observedGeneration"], 1);
        }),
        event("Warning", "TargetNotAllowed"),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(420)));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_runs_total{result="invalid_spec"} 1"#)
    );
    // The refusal is in the status now, and the watch has seen the Jobs go: nothing is
    // requested.
    ctx.caches.forget_jobs(&running);
    let v = policy::evaluate(
        &ValidSpec::parse(&c.spec).unwrap(),
        NS,
        &BTreeMap::new(),
        &ctx.config.policy,
    )
    .unwrap_err();
    let mut again = c;
    again.status = Some(refused_status(
        &Default::default(),
        Some(1),
        &v,
        &Time(Timestamp::now()),
    ));
    let steps = vec![];
    let (res, _) = run_steps(&ctx, handle, again, steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(420)));
}

/// An Explicit proxy outside `--allowed-proxies` is refused before any Job exists.
#[tokio::test]
async fn proxy_outside_the_allowed_list_is_refused() {
    let Setup { ctx, handle } = setup(with_policy("*", "*", "443", "proxy.corp.example"));
    let c = check(
        1,
        json!({"proxy": {"mode": "Explicit", "url": "http://10.9.9.9:22"}}),
    );
    let steps = vec![
        patch_status(|s| {
            let ready = condition(s, "Ready");
            assert_eq!(ready["reason"], "TargetNotAllowed");
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("allowed-proxies: proxy 10.9.9.9"),
                "{ready}"
            );
        }),
        event("Warning", "TargetNotAllowed"),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

fn get_namespace(labels: Value) -> Step {
    step(
        Method::GET,
        format!("/api/v1/namespaces/{NS}"),
        200,
        Some(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": NS, "labels": labels}})),
    )
}

/// With a label rule the Namespace is read (and only then): without the label, node probes
/// are refused; with it, the run starts; a pod-context-only check does not read it at all.
#[tokio::test]
async fn namespace_label_rule_reads_the_namespace() {
    let cfg = with_policy("regcheck.dev/node-probes=true", "*", "443", "*");
    let Setup { ctx, handle } = setup(cfg.clone());
    let steps = vec![
        get_namespace(json!({"kubernetes.io/metadata.name": NS})),
        patch_status(|s| {
            let m = condition(s, "Ready")["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(m.starts_with("node-context-namespaces: "), "{m}");
            assert!(m.contains("regcheck.dev/node-probes=true"), "{m}");
        }),
        event("Warning", "TargetNotAllowed"),
    ];
    let (res, handle) = run_steps(&ctx, handle, check(1, json!({})), steps).await;
    res.unwrap();

    let steps = vec![
        get_namespace(json!({"regcheck.dev/node-probes": "true"})),
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let (res, handle) = run_steps(&ctx, handle, check(1, json!({})), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));

    let pod_only = check(1, json!({"contexts": {"node": {"enabled": false}}}));
    // As a check of its own (the memory of the Jobs just created dropped).
    ctx.forget(UID);
    let steps = vec![
        list_nodes(),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let (res, _) = run_steps(&ctx, handle, pod_only, steps).await;
    res.unwrap();
}

/// Checks that start within the inventory TTL share one LIST of the nodes.
#[tokio::test]
async fn node_inventory_is_reused_within_its_ttl() {
    let Setup { ctx, handle } = setup(Config {
        node_cache_ttl: Duration::from_secs(60),
        ..config()
    });
    let first_run = |with_nodes: bool| {
        let mut v = vec![];
        if with_nodes {
            v.push(list_nodes());
        }
        v.extend([
            create_job(PROBE_NS, "r1", "node", 201),
            create_job(PROBE_NS, "r1", "node", 201),
            create_job(NS, "r1", "pod", 201),
            create_job(NS, "r1", "pod", 201),
        ]);
        v
    };
    let (res, handle) = run_steps(&ctx, handle, check(1, json!({})), first_run(true)).await;
    res.unwrap();
    // As for another check starting within the TTL (this one's memory of its Jobs dropped).
    ctx.forget(UID);
    let (res, _) = run_steps(&ctx, handle, check(1, json!({})), first_run(false)).await;
    res.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Objects that bypassed the CRD schema

/// Like [`run_steps`], for an object as stored (spec and status any JSON).
async fn run_stored(
    ctx: &Arc<Context>,
    handle: Handle,
    spec: Value,
    status: Option<Value>,
    steps: Vec<Step>,
) -> (Result<Requeue, Error>, Handle) {
    let mut obj = serde_json::to_value(check(1, json!({}))).unwrap();
    obj["spec"] = spec;
    obj["status"] = status.unwrap_or(Value::Null);
    let stored: StoredCheck = serde_json::from_value(obj).unwrap();
    let verifier = tokio::spawn(async move {
        let mut handle = handle;
        verify(&mut handle, steps).await;
        handle
    });
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        Box::pin(reconcile(Arc::new(stored), ctx.clone())),
    )
    .await
    .expect("reconcile hung: it made a request that was not expected (a Job?)");
    let handle = tokio::time::timeout(Duration::from_secs(10), verifier)
        .await
        .expect("timeout: not every expected request was made")
        .expect("the verifier failed");
    (res, handle)
}

/// Each malformed spec gets `Ready=False InvalidSpec` naming the field; no Job is created (an
/// unexpected request would hang reconcile), nothing panics, and the error is not retried.
#[tokio::test]
async fn malformed_objects_get_invalid_spec_and_no_jobs() {
    let many: Vec<String> = (0..200).map(|i| format!("d{i}.example.com")).collect();
    let cases: Vec<(&str, Value, Option<Value>, &str)> = vec![
        (
            "bad host",
            json!({"registry": "bad host!"}),
            None,
            "spec.registry: 'bad host!'",
        ),
        (
            "zero interval",
            json!({"registry": "r.azurecr.io", "interval": "0s"}),
            None,
            "spec.interval: '0s'",
        ),
        (
            "zero threshold",
            json!({"registry": "r.azurecr.io", "failureThreshold": 0}),
            None,
            "spec.failureThreshold: '0'",
        ),
        (
            "200 data endpoints",
            json!({"registry": "r.azurecr.io", "dataEndpoints": many}),
            None,
            "spec.dataEndpoints",
        ),
        (
            "unknown proxy mode",
            json!({"registry": "r.azurecr.io", "proxy": {"mode": "Sometimes"}}),
            None,
            "spec.proxy: cannot be read: unknown variant `Sometimes`",
        ),
        (
            "negative threshold",
            json!({"registry": "r.azurecr.io", "successThreshold": -3}),
            None,
            "spec.successThreshold: cannot be read",
        ),
        (
            "spec not an object",
            json!(["r.azurecr.io"]),
            None,
            "spec: cannot be read: expected an object",
        ),
        ("no spec at all", Value::Null, None, "spec: cannot be read"),
        (
            "garbage status too",
            json!({"registry": "r.azurecr.io", "timeoutSeconds": "x"}),
            Some(json!({"conditions": 7, "results": "lots"})),
            "spec.timeoutSeconds: cannot be read",
        ),
    ];
    for (name, spec, status, want) in cases {
        let Setup { ctx, handle } = setup(config());
        let want_owned = want.to_string();
        let steps = vec![
            patch_status(move |s| {
                let ready = condition(s, "Ready");
                assert_eq!(ready["status"], "False", "{s}");
                assert_eq!(ready["reason"], "InvalidSpec", "{s}");
                let m = ready["message"].as_str().unwrap();
                assert!(m.contains(&want_owned), "{m}");
                assert!(m.len() <= 1024);
            }),
            event("Warning", "InvalidSpec"),
        ];
        let (res, _) = run_stored(&ctx, handle, spec, status, steps).await;
        assert_eq!(res.unwrap(), Requeue::await_change(), "{name}");
        let m = ctx.metrics.render();
        assert!(
            m.contains(r#"regcheck_runs_total{result="invalid_spec"} 1"#),
            "{name}: {m}"
        );
        assert!(!m.contains("regcheck_probe_jobs_created_total{"), "{name}");
    }
}

/// A valid spec with a garbage status runs as if there were no status.
#[tokio::test]
async fn garbage_status_with_a_valid_spec_runs() {
    let Setup { ctx, handle } = setup(config());
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let spec = serde_json::to_value(check(1, json!({})).spec).unwrap();
    let (res, _) = run_stored(
        &ctx,
        handle,
        spec,
        Some(json!({"lastRun": {"id": 5}, "conditions": [{"type": 1}]})),
        steps,
    )
    .await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
}

/// The whole controller (watches included) against a mocked API server whose LIST of checks
/// holds an object that the typed check cannot decode next to a good one: the watch does not
/// fail, the bad check gets `InvalidSpec`, the good one's run starts.
#[tokio::test]
async fn watch_survives_an_undecodable_object() {
    let good = serde_json::to_value(check(1, json!({}))).unwrap();
    let mut bad = good.clone();
    bad["metadata"]["name"] = json!("broken");
    bad["metadata"]["uid"] = json!("0f0e0d0c-0000-4000-8000-00000000beef");
    bad["spec"]["proxy"] = json!({"mode": "Sometimes"});
    bad["status"] = json!({"conditions": "garbage"});
    let checks = list(
        "RegistryConnectivityCheckList",
        "regcheck.dev/v1alpha1",
        vec![bad, good],
    );
    // This is what the typed watch would have choked on.
    assert!(
        serde_json::from_value::<kube::core::ObjectList<RegistryConnectivityCheck>>(checks.clone())
            .is_err()
    );

    let (whole, mut handle) = Whole::start();
    let server = async move {
        let mut held = Vec::new(); // watch requests: left open, like a quiet watch
        let (mut invalid_written, mut jobs_created) = (None, 0);
        while invalid_written.is_none() || jobs_created < 4 {
            let (req, send) = handle.next_request().await.expect("client alive");
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let query = req.uri().query().unwrap_or("").to_string();
            let body = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let reply = |code: u16, v: &Value| {
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(v).unwrap()))
                    .unwrap()
            };
            if query.contains("watch=true") {
                held.push(send);
                continue;
            }
            let answer = match (method.as_str(), path.as_str()) {
                ("GET", "/apis/regcheck.dev/v1alpha1/registryconnectivitychecks") => checks.clone(),
                ("GET", "/apis/batch/v1/jobs") => list("JobList", "batch/v1", vec![]),
                ("GET", p) if p.ends_with("/jobs") => list("JobList", "batch/v1", vec![]),
                ("GET", p) if p.ends_with("/pods") => list("PodList", "v1", vec![]),
                ("GET", "/api/v1/nodes") => list("NodeList", "v1", nodes()),
                ("POST", p) if p.ends_with("/jobs") => {
                    assert!(
                        body["metadata"]["annotations"]["regcheck.dev/check"]
                            .as_str()
                            .unwrap_or("")
                            .ends_with("/acr"),
                        "a Job for the broken check: {body}"
                    );
                    jobs_created += 1;
                    body
                }
                ("PATCH", p) if p.ends_with("/broken/status") => {
                    invalid_written = Some(body["status"].clone());
                    body
                }
                ("POST", p) if p.ends_with("/events") => body,
                other => panic!("unexpected request {other:?} {query}"),
            };
            send.send_response(reply(200, &answer));
        }
        (invalid_written.unwrap(), held)
    };
    let (status, _held) = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the controller neither refused the broken check nor ran the good one");
    let ready_cond = condition(&status, "Ready");
    assert_eq!(ready_cond["reason"], "InvalidSpec");
    assert!(
        ready_cond["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.proxy: cannot be read: unknown variant `Sometimes`"),
        "{ready_cond}"
    );
    whole.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Watch caches of probe Jobs and pods

#[test]
fn watch_scopes_cover_the_probe_namespace_per_watched_namespace() {
    let all = watch_scopes(&config());
    assert_eq!(
        all,
        [WatchScope {
            controller: 0,
            namespace: None,
            selector: MANAGED_BY_SELECTOR.into()
        }]
    );
    let some = watch_scopes(&Config {
        namespaces: vec![NS.into(), PROBE_NS.into()],
        ..config()
    });
    let got: Vec<(usize, Option<&str>, &str)> = some
        .iter()
        .map(|s| (s.controller, s.namespace.as_deref(), s.selector.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, Some(NS), MANAGED_BY_SELECTOR),
            (
                0,
                Some(PROBE_NS),
                "app.kubernetes.io/managed-by=regcheck,regcheck.dev/check-namespace=team-a"
            ),
            (1, Some(PROBE_NS), MANAGED_BY_SELECTOR),
        ]
    );
}

/// A check's Jobs from the caches: only its own, only in its namespaces, each once, in the
/// order a LIST per namespace would give.
#[tokio::test]
async fn cached_jobs_are_the_checks_own_once_each() {
    let Setup { ctx, .. } = setup(config());
    let c = check(1, json!({}));
    let jobs = jobs_of(&c, 1, "active");
    let mut other = jobs[0].clone();
    other.metadata.name = Some("other-check".into());
    other
        .labels_mut()
        .insert(labels::CHECK_UID.into(), "another-uid".into());
    let mut elsewhere = jobs[0].clone();
    elsewhere.metadata.name = Some("elsewhere".into());
    elsewhere.metadata.namespace = Some("team-b".into());
    // Reversed, and twice: the order and duplicates come from the watches, not from here.
    let mut input: Vec<Job> = jobs.iter().rev().cloned().collect();
    input.extend(jobs.iter().cloned());
    input.extend([other, elsewhere]);
    cache(&ctx, &input, &[]);
    let got = cached_jobs(&ctx, NS, UID);
    let names = |js: &[Job]| js.iter().map(|j| j.name_any()).collect::<Vec<_>>();
    let mut want = jobs.clone();
    want.sort_by_key(|j| (j.namespace() != Some(PROBE_NS.into()), j.name_any()));
    assert_eq!(names(&got), names(&want));
    assert_eq!(sorted_contexts(&got).len(), 4);
}

/// Before the watches have listed, a reconcile decides nothing and asks the API nothing.
#[tokio::test]
async fn nothing_is_decided_before_the_caches_are_filled() {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(Context::new(
        Client::new(svc, "default"),
        config(),
        Arc::new(metrics::Metrics::new()),
    ));
    let (res, _) = run_steps(&ctx, handle, check(1, json!({})), vec![]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(1)));
}

/// Every diagnosis the operator builds itself (invalid spec, refused by the policy, probe
/// failures) names the cause the catalogue gives its reason.
#[test]
fn operator_built_diagnoses_have_the_catalogue_cause() {
    use crate::engine::findings::{Cause, Reason};
    let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
    let check = |d: &crate::operator::crd::Diagnosis| {
        let cause: Cause = serde_json::from_value(serde_json::Value::String(d.cause.clone()))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cause {:?} is no catalogue cause: {e}",
                    d.reason, d.cause
                )
            });
        if let Ok(reason) =
            serde_json::from_value::<Reason>(serde_json::Value::String(d.reason.clone()))
        {
            assert_eq!(cause, reason.cause(), "{}", d.reason);
            assert_eq!(d.remediation, reason.remediation(), "{}", d.reason);
        }
    };
    let invalid = invalid_status(&Default::default(), Some(1), "spec.interval: bad", &now);
    check(invalid.diagnosis.as_ref().unwrap());
    let v = policy::Violation {
        rule: policy::rules::ALLOWED_PORTS,
        message: "registry r uses port 8443".into(),
    };
    let refused = refused_status(&Default::default(), Some(1), &v, &now);
    check(refused.diagnosis.as_ref().unwrap());
    for &r in Reason::ALL.iter().filter(|r| r.is_probe_failure()) {
        let summary = crate::operator::aggregate::RunSummary {
            verdict: crate::operator::aggregate::RunVerdict::Unknown,
            primary: None,
            probe_failure: Some((r, "the probe pod failed".into())),
            disagreements: vec![],
            compared: false,
            kubelet: Default::default(),
            errors: vec![],
            results: vec![],
            counts: Default::default(),
        };
        check(&crate::operator::aggregate::diagnosis(&summary).unwrap());
    }
}

/// Leadership lost while a run's first Job is being created: that request is abandoned at
/// once, no further Job is created and no status written; a reconcile after the loss makes
/// no request at all.
#[tokio::test]
async fn no_write_after_leadership_is_lost() {
    let (leading, leadership) = leader::Leadership::channel();
    leading.send_replace(Some(leader::unbounded()));
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(
        Context::new(
            Client::new(svc, "default"),
            config(),
            Arc::new(metrics::Metrics::new()),
        )
        .with_leadership(leadership),
    );
    ctx.caches.set_ready();
    let c = check(1, json!({}));
    let task = tokio::spawn({
        let (ctx, c) = (ctx.clone(), c.clone());
        async move { reconcile(Arc::new(StoredCheck::from(&c)), ctx).await }
    });
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().path(), "/api/v1/nodes");
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(
                serde_json::to_vec(&list("NodeList", "v1", nodes())).unwrap(),
            ))
            .unwrap(),
    );
    // The first create is in flight (never answered) when leadership goes.
    let (req, _pending) = handle.next_request().await.unwrap();
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.uri().path(),
        format!("/apis/batch/v1/namespaces/{PROBE_NS}/jobs")
    );
    leading.send_replace(None);
    let res = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile waited for the request in flight")
        .unwrap();
    assert_eq!(res.unwrap_err().metric_label(), "not_leader");
    // Nothing else was sent, and a new reconcile sends nothing.
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        Box::pin(reconcile(Arc::new(StoredCheck::from(&c)), ctx.clone())),
    )
    .await
    .expect("reconcile hung");
    assert_eq!(res.unwrap_err().metric_label(), "not_leader");
    drop(ctx);
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await
    {
        panic!("{} {} after leadership was lost", req.method(), req.uri());
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 13

/// A run-now request made while a run is in progress is not lost: the collected run records
/// the token it started with (from its Jobs), not the check's current one, so the newer
/// request starts another run afterwards.
#[tokio::test]
async fn run_now_during_a_run_starts_another_run() {
    let Setup { ctx, handle } = setup(config());
    let mut at_start = check(1, json!({"interval": "1h"}));
    at_start
        .annotations_mut()
        .insert(decide::RUN_NOW_ANNOTATION.into(), "first".into());
    let jobs = jobs_of(&at_start, 1, "complete");
    let pods: Vec<Value> = jobs.iter().map(|j| pod_of_job(j, Some(HEALTHY))).collect();
    cache(&ctx, &jobs, &pods);
    // During the run, the user asks again.
    let mut now = at_start.clone();
    now.annotations_mut()
        .insert(decide::RUN_NOW_ANNOTATION.into(), "second".into());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let steps = vec![
        patch_status(move |s| {
            assert_eq!(s["lastRunNow"], "first", "{s}");
            *w.lock().unwrap() = s.clone();
        }),
        event("Normal", "Ready"),
        delete_jobs(PROBE_NS, sel_run("r1")),
        delete_jobs(NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, now.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(1)));
    // With the written status, the newer request starts run 2 at once (not after the hour).
    let mut after = now;
    after.status = Some(serde_json::from_value(written.lock().unwrap().clone()).unwrap());
    let d = decide::decide(
        &after,
        ValidSpec::parse(&after.spec).unwrap().interval,
        &[],
        "2024-01-01T00:01:00Z".parse().unwrap(),
        &ctx.config.decide(),
    );
    assert_eq!(
        d.action,
        Action::Start {
            run: 2,
            reason: decide::StartReason::RunNow
        }
    );
}

/// Jobs added to a run in progress carry the run-now token the run started with (or none),
/// not the check's current one: the run records one token.
#[tokio::test]
async fn topped_up_jobs_keep_the_runs_run_now_token() {
    for started_with in [Some("first"), None] {
        let Setup { ctx, handle } = setup(config());
        let mut at_start = check(1, json!({}));
        if let Some(t) = started_with {
            at_start
                .annotations_mut()
                .insert(decide::RUN_NOW_ANNOTATION.into(), t.into());
        }
        let first: Vec<Job> = jobs_of(&at_start, 1, "active")
            .into_iter()
            .take(1)
            .collect();
        cache(&ctx, &first, &[]);
        let mut now = at_start.clone();
        now.annotations_mut()
            .insert(decide::RUN_NOW_ANNOTATION.into(), "second".into());
        let want = json!(started_with);
        let token = move |b: &Value| {
            assert_eq!(b["metadata"]["annotations"]["regcheck.dev/run-now"], want);
        };
        let steps = vec![
            list_nodes(),
            create_job(PROBE_NS, "r1", "node", 201).body(token.clone()),
            create_job(NS, "r1", "pod", 201).body(token.clone()),
            create_job(NS, "r1", "pod", 201).body(token),
        ];
        let (res, _) = run_steps(&ctx, handle, now, steps).await;
        assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    }
}

/// Pods that only claim to be a probe's are never credited: a pod not controlled by the Job
/// (by UID: a reused run number's old pod has the same Job name), one being deleted, or one
/// whose image, command, arguments or node are not the Job template's. The run keeps waiting
/// (no request: a collect would write the status); the probe's own pod is credited.
#[tokio::test]
async fn forged_and_stale_pods_are_not_credited() {
    let c = check(
        1,
        json!({"contexts": {"pod": {"enabled": false}}, "interval": "1h"}),
    );
    let mut j = jobs_of(&c, 1, "active").remove(0);
    j.annotations_mut()
        .insert(run_ann::RUN_SIZE.into(), "1".into());
    let genuine = pod_of_job(&j, Some(TIMEOUT));
    let forged = |f: &dyn Fn(&mut Value)| {
        let mut p = genuine.clone();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "no owner",
            forged(&|p| {
                let name = p["metadata"]["ownerReferences"][0]["name"].clone();
                p["metadata"]["ownerReferences"] = json!(null);
                p["metadata"]["labels"]["job-name"] = name.clone();
                p["metadata"]["labels"]["batch.kubernetes.io/job-name"] = name;
            }),
        ),
        (
            "the old Job of a reused run number",
            forged(&|p| p["metadata"]["ownerReferences"][0]["uid"] = json!("old-job-uid")),
        ),
        (
            "owner that is not the controller",
            forged(&|p| p["metadata"]["ownerReferences"][0]["controller"] = json!(false)),
        ),
        (
            "being deleted",
            forged(&|p| p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:10Z")),
        ),
        (
            "another image",
            forged(&|p| p["spec"]["containers"][0]["image"] = json!("evil/regcheck:1")),
        ),
        (
            "other arguments",
            forged(&|p| p["spec"]["containers"][0]["args"] = json!(["probe"])),
        ),
        (
            "a command",
            forged(&|p| p["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c"])),
        ),
        (
            "another node",
            forged(&|p| p["spec"]["nodeName"] = json!("aks-evil-0")),
        ),
    ];
    for (name, pod) in cases {
        let Setup { ctx, handle } = setup(config());
        cache(&ctx, std::slice::from_ref(&j), std::slice::from_ref(&pod));
        let (res, _) = run_steps(&ctx, handle, c.clone(), vec![]).await;
        assert_eq!(
            res.unwrap(),
            Requeue::requeue(decide::POLL_RUNNING),
            "{name}"
        );
        let p: Pod = serde_json::from_value(pod).unwrap();
        let why = not_the_probe_pod(std::slice::from_ref(&j), &p).expect(name);
        assert!(!why.is_empty(), "{name}");
    }
    // A forged pod next to the genuine one: the genuine report is the one collected.
    let Setup { ctx, handle } = setup(config());
    let mut fake = genuine.clone();
    fake["metadata"]["name"] = json!("aaa-forged");
    fake["metadata"]["ownerReferences"] = json!(null);
    fake["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = json!(HEALTHY);
    cache(&ctx, std::slice::from_ref(&j), &[fake, genuine]);
    let steps = vec![
        patch_status(|s| {
            assert_eq!(s["diagnosis"]["reason"], "ConnectionTimedOut", "{s}");
        }),
        event("Warning", "ConnectionTimedOut"),
        delete_jobs(PROBE_NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

const QUOTA: &str = "jobs.batch \"rcc-acr\" is forbidden: exceeded quota: no-jobs, requested: count/jobs.batch=1, used: count/jobs.batch=0, limited: count/jobs.batch=0";

/// A create refused for good (quota, webhook, policy, missing namespace): the API's answer.
fn refused_job(ns: &str, run: &str, context: &str, code: u16, message: &str) -> Step {
    let mut s = create_job(ns, run, context, code);
    s.reply = Some(
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": if code == 403 { "Forbidden" } else { "BadRequest" },
        "code": code}),
    );
    s
}

/// A ResourceQuota that allows no Jobs in the check's namespace: the pod-context probes become
/// `ProbeNotCreated` results naming the API's message, the node-context ones run, and the run
/// completes with `ProbesHealthy=False`, `Ready=Unknown` and an Event (instead of an empty
/// status and a reconcile error every second). The refused Jobs are not asked for again
/// within the run.
#[tokio::test]
async fn refused_probe_jobs_become_results_and_the_run_completes() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({}));
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        refused_job(NS, "r1", "pod", 403, QUOTA),
        refused_job(NS, "r1", "pod", 403, QUOTA),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    // The node Jobs run: the refused ones are not created again (only the nodes are listed
    // to plan the top-up).
    let node_jobs: Vec<Job> = jobs_of(&c, 1, "active")
        .into_iter()
        .filter(|j| j.labels()[labels::CONTEXT] == "node")
        .collect();
    cache(&ctx, &node_jobs, &[]);
    let (res, handle) = run_steps(&ctx, handle, c.clone(), vec![]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    // They finish healthy: the run is collected.
    let done: Vec<Job> = jobs_of(&c, 1, "complete")
        .into_iter()
        .filter(|j| j.labels()[labels::CONTEXT] == "node")
        .collect();
    let pods: Vec<Value> = done.iter().map(|j| pod_of_job(j, Some(HEALTHY))).collect();
    cache(&ctx, &done, &pods);
    let steps = vec![
        patch_status(|s| {
            let probes = condition(s, "ProbesHealthy");
            assert_eq!(probes["status"], "False", "{s}");
            assert_eq!(probes["reason"], "ProbeNotCreated", "{s}");
            assert!(
                probes["message"]
                    .as_str()
                    .unwrap()
                    .contains("exceeded quota"),
                "{probes}"
            );
            assert_eq!(condition(s, "Ready")["status"], "Unknown", "{s}");
            assert_eq!(s["lastRun"]["id"], "r1");
            assert_eq!(s["counts"]["probes"], 4, "{s}");
            let refused: Vec<&Value> = s["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["reason"] == "ProbeNotCreated")
                .collect();
            assert_eq!(refused.len(), 2, "{s}");
            for r in refused {
                assert_eq!(r["context"], "Pod");
                assert!(
                    r["message"].as_str().unwrap().contains("exceeded quota"),
                    "{r}"
                );
            }
        }),
        event("Warning", "ProbeNotCreated"),
        delete_jobs(PROBE_NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
    assert!(
        !ctx.metrics
            .render()
            .contains("regcheck_reconcile_errors_total{"),
        "a refusal is a result, not a reconcile error"
    );
}

/// Every probe refused (a webhook denies them all): the run completes at once; another context
/// that found a registry problem still decides `Ready`.
#[tokio::test]
async fn a_run_whose_probes_are_all_refused_completes_at_once() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({"contexts": {"node": {"enabled": false}}}));
    let denied =
        "admission webhook \"validate.kyverno.svc\" denied the request: policy require-labels";
    let steps = vec![
        list_nodes(),
        refused_job(NS, "r1", "pod", 400, denied),
        refused_job(NS, "r1", "pod", 400, denied),
        patch_status(|s| {
            assert_eq!(
                condition(s, "ProbesHealthy")["reason"],
                "ProbeNotCreated",
                "{s}"
            );
            assert_eq!(condition(s, "Ready")["status"], "Unknown", "{s}");
            assert_eq!(s["diagnosis"]["reason"], "ProbeNotCreated", "{s}");
            assert!(
                s["diagnosis"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("denied the request"),
                "{s}"
            );
            assert_eq!(s["lastRun"]["id"], "r1");
        }),
        event("Warning", "ProbeNotCreated"),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    let requeue = res.unwrap();
    assert_ne!(requeue, Requeue::requeue(decide::POLL_RUNNING));
    assert_ne!(requeue, Requeue::requeue(Duration::from_secs(1)));

    // Node probes time out while the pod probes are refused: Ready follows the registry
    // problem.
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({}));
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        refused_job(NS, "r1", "pod", 403, QUOTA),
        refused_job(NS, "r1", "pod", 403, QUOTA),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    res.unwrap();
    let done: Vec<Job> = jobs_of(&c, 1, "complete")
        .into_iter()
        .filter(|j| j.labels()[labels::CONTEXT] == "node")
        .collect();
    let pods: Vec<Value> = done.iter().map(|j| pod_of_job(j, Some(TIMEOUT))).collect();
    cache(&ctx, &done, &pods);
    let steps = vec![
        patch_status(|s| {
            assert_eq!(condition(s, "Ready")["status"], "False", "{s}");
            assert_eq!(condition(s, "Ready")["reason"], "ConnectionTimedOut", "{s}");
            assert_eq!(condition(s, "ProbesHealthy")["status"], "False", "{s}");
        }),
        event("Warning", "ConnectionTimedOut"),
        delete_jobs(PROBE_NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

/// 429 and 5xx on creating a Job stay transient: a reconcile error, retried.
#[tokio::test]
async fn throttled_job_creation_stays_transient() {
    for code in [429, 503] {
        let Setup { ctx, handle } = setup(config());
        let steps = vec![list_nodes(), create_job(PROBE_NS, "r1", "node", code)];
        let (res, _) = run_steps(&ctx, handle, check(1, json!({})), steps).await;
        assert_eq!(res.unwrap_err().metric_label(), "create_job", "{code}");
    }
}

/// Reconcile errors of one check back off exponentially (from the error kind's first delay,
/// at most [`MAX_RETRY_AFTER`]); a successful reconcile starts over.
#[tokio::test]
async fn repeated_errors_back_off_exponentially() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({}));
    let obj = Arc::new(StoredCheck::from(&c));
    let mut handle = handle;
    let mut got = vec![];
    for _ in 0..7 {
        let steps = vec![list_nodes(), create_job(PROBE_NS, "r1", "node", 503)];
        let (res, h) = run_steps(&ctx, handle, c.clone(), steps).await;
        handle = h;
        got.push(error_policy(obj.clone(), &res.unwrap_err(), ctx.clone()));
    }
    let want: Vec<Requeue> = [15, 30, 60, 120, 240, 300, 300]
        .into_iter()
        .map(|s| Requeue::requeue(Duration::from_secs(s)))
        .collect();
    assert_eq!(got, want);
    // A reconcile that succeeds starts the backoff over.
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(NS, "r1", "pod", 201),
        create_job(NS, "r1", "pod", 201),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    res.unwrap();
    ctx.forget(UID);
    let steps = vec![list_nodes(), create_job(PROBE_NS, "r1", "node", 503)];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    assert_eq!(
        error_policy(obj, &res.unwrap_err(), ctx.clone()),
        Requeue::requeue(Duration::from_secs(15))
    );
}

/// The status of a run is written, then deleting its Jobs fails: the retry (with the cached
/// check and Jobs from before the status write) does not collect the run a second time.
#[tokio::test]
async fn a_failed_deletion_does_not_collect_the_run_twice() {
    let Setup { ctx, handle } = setup(config());
    let c = check(1, json!({"contexts": {"pod": {"enabled": false}}}));
    let jobs = jobs_of(&c, 1, "complete");
    let pods: Vec<Value> = jobs.iter().map(|j| pod_of_job(j, Some(HEALTHY))).collect();
    cache(&ctx, &jobs, &pods);
    let mut failing_delete = delete_jobs(PROBE_NS, sel_run("r1"));
    failing_delete.code = 500;
    failing_delete.reply = Some(status_error(500, "InternalError"));
    let steps = vec![
        patch_status(|s| assert_eq!(s["lastRun"]["id"], "r1")),
        event("Normal", "Ready"),
        failing_delete,
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap_err().metric_label(), "delete_jobs");
    // The retry: the watches have delivered neither the status nor a deletion.
    let (res, _) = run_steps(&ctx, handle, c, vec![]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(1)));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_runs_total{result="healthy"} 1"#),
        "{}",
        ctx.metrics.render()
    );
}

/// With `--max-concurrent-jobs`, a second start of the same run before the watch shows its
/// first Jobs creates none: the Jobs just created count against the limit.
#[tokio::test]
async fn start_respects_the_concurrency_limit_while_the_cache_lags() {
    let Setup { ctx, handle } = setup(Config {
        max_concurrent_jobs: 2,
        ..config()
    });
    let c = check(1, json!({}));
    let steps = vec![
        list_nodes(),
        create_job(PROBE_NS, "r1", "node", 201),
        create_job(PROBE_NS, "r1", "node", 201),
    ];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    // Triggered again; the cache shows nothing yet: two Jobs run, none more may start.
    let (res, _) = run_steps(&ctx, handle, c, vec![list_nodes()]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_probe_jobs_created_total{context="node"} 2"#)
    );
    assert!(
        !ctx.metrics
            .render()
            .contains(r#"regcheck_probe_jobs_created_total{context="pod"}"#)
    );
}

/// The error chain names each error once: kube's finalizer error and kube's API error print
/// their source in their own text, which is not repeated; the API error reads as code,
/// reason and message.
#[test]
fn error_chain_does_not_repeat_itself() {
    let status: kube::core::Status = serde_json::from_value(json!({
        "status": "Failure", "message": "exceeded quota: no-jobs", "reason": "Forbidden",
        "code": 403}))
    .unwrap();
    let e = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
        Error::CreateJob {
            namespace: NS.into(),
            name: "rcc-acr-p-1".into(),
            source: kube::Error::Api(Box::new(status)),
        },
    )));
    assert_eq!(
        error_chain(&e),
        "failed to apply object: creating probe job team-a/rcc-acr-p-1: API error 403 Forbidden: exceeded quota: no-jobs"
    );
}

/// A check that becomes invalid or refused keeps no conditions from its last run: they say
/// nothing now (an old `ProbesHealthy=False` would keep `ProbesFailing` firing), so they turn
/// Unknown with the reason why no probe runs.
#[test]
fn invalid_and_refused_checks_keep_no_stale_conditions() {
    let t = Time(Timestamp::from_second(1_700_000_000).unwrap());
    let cond = |type_: &str, status: &str, reason: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: "from the last run".into(),
        observed_generation: Some(1),
        last_transition_time: t.clone(),
    };
    let prev = RegistryConnectivityCheckStatus {
        conditions: vec![
            cond("Ready", "True", "Healthy"),
            cond("RegistryReachable", "False", "ConnectionTimedOut"),
            cond("ProbesHealthy", "False", "ProbeUnschedulable"),
            cond("ContextsConsistent", "True", "ContextsAgree"),
        ],
        ..Default::default()
    };
    let c = check(2, json!({"registry": "r.azurecr.io"}));
    let violation = policy::evaluate(
        &ValidSpec::parse(&c.spec).unwrap(),
        NS,
        &BTreeMap::new(),
        &PolicyConfig::parse("*", "*.example.com", "443", "*").unwrap(),
    )
    .unwrap_err();
    for (st, why) in [
        (
            invalid_status(&prev, Some(2), "spec.interval: '1s' ...", &t),
            INVALID_SPEC,
        ),
        (
            refused_status(&prev, Some(2), &violation, &t),
            "TargetNotAllowed",
        ),
    ] {
        for c in &st.conditions {
            if c.type_ == "Ready" {
                assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", why));
            } else {
                assert_eq!(c.status, "Unknown", "{c:?}");
                assert_eq!(c.reason, why, "{c:?}");
                assert_eq!(c.observed_generation, Some(2), "{c:?}");
            }
        }
        assert_eq!(st.conditions.len(), 4);
        let m = metrics::Metrics::new();
        m.set_check(NS, "acr", "r.azurecr.io", &st);
        let text = m.render();
        assert!(
            text.contains(r#"regcheck_check_probes_healthy{namespace="team-a",name="acr"} -1"#),
            "{text}"
        );
    }
}

fn ago(secs: i64) -> String {
    Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
        .unwrap()
        .to_string()
}

/// The kubelet retries a failed image pull: a probe pod in ErrImagePull/ImagePullBackOff is
/// given PULL_RETRY_GRACE from its start before it counts as ProbeImagePullFailed; an image
/// name that cannot work (InvalidImageName) is final at once.
#[tokio::test]
async fn image_pull_failures_get_the_kubelets_retries() {
    let c = check(
        1,
        json!({"contexts": {"pod": {"enabled": false}}, "interval": "1h"}),
    );
    let mut j = jobs_of(&c, 1, "active").remove(0);
    j.annotations_mut()
        .insert(run_ann::RUN_SIZE.into(), "1".into());
    let pulling = |reason: &str, started: i64| {
        let mut p = pod_of_job(&j, None);
        p["status"] = json!({"phase": "Pending", "startTime": ago(started),
            "containerStatuses": [{"name": "probe", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "rpc error"}}}]});
        p
    };
    for reason in ["ErrImagePull", "ImagePullBackOff"] {
        let Setup { ctx, handle } = setup(config());
        cache(&ctx, std::slice::from_ref(&j), &[pulling(reason, 5)]);
        let (res, _) = run_steps(&ctx, handle, c.clone(), vec![]).await;
        assert_eq!(
            res.unwrap(),
            Requeue::requeue(decide::POLL_RUNNING),
            "{reason}"
        );
    }
    for (reason, started) in [("ErrImagePull", 120), ("InvalidImageName", 5)] {
        let Setup { ctx, handle } = setup(config());
        cache(&ctx, std::slice::from_ref(&j), &[pulling(reason, started)]);
        let steps = vec![
            patch_status(|s| {
                assert_eq!(
                    condition(s, "ProbesHealthy")["reason"],
                    "ProbeImagePullFailed"
                );
            }),
            event("Warning", "ProbeImagePullFailed"),
            delete_jobs(PROBE_NS, sel_run("r1")),
        ];
        let (res, _) = run_steps(&ctx, handle, c.clone(), steps).await;
        res.unwrap();
    }
}

/// A Job that finished a moment ago whose pod the cache does not show yet is still running
/// (the pod's watch event is on the way); only after POD_CACHE_GRACE is it ProbeCrashed.
#[tokio::test]
async fn a_finished_job_waits_for_its_pod_in_the_cache() {
    let c = check(
        1,
        json!({"contexts": {"pod": {"enabled": false}}, "interval": "1h"}),
    );
    let finished = |secs: i64| {
        let mut j = jobs_of(&c, 1, "complete").remove(0);
        j.annotations_mut()
            .insert(run_ann::RUN_SIZE.into(), "1".into());
        j.status = Some(
            serde_json::from_value(json!({"succeeded": 1, "completionTime": ago(secs),
                "conditions": [{"type": "Complete", "status": "True",
                                "lastTransitionTime": ago(secs)}]}))
            .unwrap(),
        );
        j
    };
    let Setup { ctx, handle } = setup(config());
    cache(&ctx, &[finished(2)], &[]);
    let (res, _) = run_steps(&ctx, handle, c.clone(), vec![]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));

    let Setup { ctx, handle } = setup(config());
    cache(&ctx, &[finished(120)], &[]);
    let steps = vec![
        patch_status(|s| {
            assert_eq!(
                condition(s, "ProbesHealthy")["reason"],
                "ProbeCrashed",
                "{s}"
            );
        }),
        event("Warning", "ProbeCrashed"),
        delete_jobs(PROBE_NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

/// A run-now annotation set while a run is in flight belongs to the next run: the finishing
/// run records the token it started with, so the new one still starts a run (and `kubectl
/// regcheck run --wait` waits for that one).
#[tokio::test]
async fn run_now_set_mid_run_is_not_taken_by_the_run_in_flight() {
    let Setup { ctx, handle } = setup(config());
    let mut c = check(
        1,
        json!({"contexts": {"pod": {"enabled": false}}, "interval": "1h"}),
    );
    c.annotations_mut()
        .insert(decide::RUN_NOW_ANNOTATION.into(), "before".into());
    let jobs = jobs_of(&c, 1, "complete");
    assert!(
        jobs.iter()
            .all(|j| j.annotations().get(run_ann::RUN_NOW).map(String::as_str) == Some("before"))
    );
    // Set while r1 runs.
    c.annotations_mut().insert(
        decide::RUN_NOW_ANNOTATION.into(),
        "kubectl-regcheck-2".into(),
    );
    let pods: Vec<Value> = jobs.iter().map(|j| pod_of_job(j, Some(HEALTHY))).collect();
    cache(&ctx, &jobs, &pods);
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let steps = vec![
        patch_status(move |s| {
            assert_eq!(s["lastRun"]["id"], "r1", "{s}");
            assert_eq!(s["lastRunNow"], "before", "{s}");
            *w.lock().unwrap() = s.clone();
        }),
        event("Normal", "Ready"),
        delete_jobs(PROBE_NS, sel_run("r1")),
    ];
    let (res, _) = run_steps(&ctx, handle, c.clone(), steps).await;
    res.unwrap();
    let mut after = c;
    after.status = Some(serde_json::from_value(written.lock().unwrap().clone()).unwrap());
    let d = decide::decide(
        &after,
        Duration::from_secs(3600),
        &[],
        k8s_openapi::jiff::Timestamp::now(),
        &decide::DecideConfig {
            max_concurrent_jobs: 10,
        },
    );
    assert_eq!(
        d.action,
        decide::Action::Start {
            run: 2,
            reason: decide::StartReason::RunNow
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Scale: many checks at once

/// Check `i` of many (own name and uid), created long ago (no first-run jitter).
fn check_n(i: usize) -> RegistryConnectivityCheck {
    let mut c = check(1, json!({}));
    c.metadata.name = Some(format!("acr-{i}"));
    c.metadata.uid = Some(format!("0f0e0d0c-0000-4000-8000-{i:012}"));
    c
}

/// Reconciles of many new checks at once make ONE node LIST between them, in pages
/// (`limit=` [`node_cache::PAGE_SIZE`], then `continue=`), and plan with every page's nodes.
#[tokio::test]
async fn concurrent_first_runs_share_one_paged_node_list() {
    const N: usize = 12;
    // A zero TTL: only the single flight can make the callers share.
    let Setup { ctx, mut handle } = setup(config());
    let server = tokio::spawn(async move {
        let (mut node_lists, mut creates) = (Vec::new(), 0usize);
        while let Some((req, send)) = handle.next_request().await {
            let query: Vec<String> =
                url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
            let (code, reply) = match (req.method().clone(), req.uri().path()) {
                (Method::GET, "/api/v1/nodes") => {
                    node_lists.push(query.clone());
                    // Slow enough for every other reconcile to arrive meanwhile.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut all = nodes();
                    let mut page = list("NodeList", "v1", vec![]);
                    if query.iter().any(|q| q == "continue=page-2") {
                        page["items"] = json!([all.pop().unwrap()]);
                    } else {
                        page["items"] = json!([all.remove(0)]);
                        page["metadata"]["continue"] = json!("page-2");
                    }
                    (200, page)
                }
                (Method::POST, p) if p.ends_with("/jobs") => {
                    creates += 1;
                    let bytes = req.into_body().collect_bytes().await.unwrap();
                    (201, serde_json::from_slice(&bytes).unwrap())
                }
                (m, p) => panic!("unexpected request {m} {p}"),
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
        (node_lists, creates)
    });
    let reconciles: Vec<_> = (0..N)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(
                async move { reconcile(Arc::new(StoredCheck::from(&check_n(i))), ctx).await },
            )
        })
        .collect();
    for r in reconciles {
        tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .expect("reconcile hung")
            .unwrap()
            .unwrap();
    }
    drop(ctx);
    let (node_lists, creates) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the mock server did not finish")
        .unwrap();
    assert_eq!(node_lists.len(), 2, "one list of two pages: {node_lists:?}");
    assert!(
        node_lists[0].contains(&format!("limit={}", node_cache::PAGE_SIZE)),
        "{node_lists:?}"
    );
    assert!(
        node_lists[1].contains(&format!("limit={}", node_cache::PAGE_SIZE)),
        "{node_lists:?}"
    );
    assert!(
        node_lists[1].contains(&"continue=page-2".to_string()),
        "{node_lists:?}"
    );
    // Both pages' nodes planned: 2 targets × (node + pod context) per check.
    assert_eq!(creates, N * 4);
}

/// What the caches keep of a Job and its pod still identifies the probe pod, gives the
/// same outcome and run bookkeeping, and maps to the same check; a forged pod stays forged.
#[test]
fn slim_cache_objects_keep_what_reconciles_read() {
    let c = check(1, json!({}));
    let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
    let managed = json!([{"manager": "kube-controller-manager", "operation": "Update",
        "apiVersion": "batch/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]);
    for j in jobs_of(&c, 1, "complete") {
        let mut j = j;
        j.metadata.managed_fields = serde_json::from_value(managed.clone()).unwrap();
        let mut pod: Pod = serde_json::from_value(pod_of_job(&j, Some(HEALTHY))).unwrap();
        pod.metadata.managed_fields = serde_json::from_value(managed.clone()).unwrap();
        let (mut sj, mut sp) = (j.clone(), pod.clone());
        slim::job(&mut sj);
        slim::pod(&mut sp);
        assert!(sj.metadata.managed_fields.is_none() && sp.metadata.managed_fields.is_none());
        assert!(json_len(&sj) < json_len(&j) && json_len(&sp) < json_len(&pod));
        assert_eq!(not_the_probe_pod(std::slice::from_ref(&sj), &sp), None);
        assert_eq!(
            probe_outcome(&sj, Some(&sp), now),
            probe_outcome(&j, Some(&pod), now)
        );
        assert_ne!(probe_outcome(&sj, Some(&sp), now), ProbeOutcome::Running);
        assert_eq!(RunJob::from_job(&sj, true), RunJob::from_job(&j, true));
        assert_eq!(check_of(&sj), check_of(&j));
        assert_eq!(check_of(&sp), check_of(&pod));
        assert_eq!(job_target(&sj), job_target(&j));
        assert_eq!(job_context(&sj), job_context(&j));
        let mut forged = pod.clone();
        forged.spec.as_mut().unwrap().containers[0].image = Some("evil:1".into());
        slim::pod(&mut forged);
        assert!(not_the_probe_pod(std::slice::from_ref(&sj), &forged).is_some());
    }
}

/// The whole controller ([`run`], watches included) against a mocked API server, stopped by
/// [`Whole::stop`].
struct Whole {
    stop: futures::channel::oneshot::Sender<()>,
    controller: tokio::task::JoinHandle<()>,
}

impl Whole {
    /// Starts it; the handle answers its requests.
    fn start() -> (Whole, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let ctx = Arc::new(Context::new(
            client,
            config(),
            Arc::new(metrics::Metrics::new()),
        ));
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = futures::channel::oneshot::channel::<()>();
        let controller = tokio::spawn(async move {
            let _ = run(ctx, ready, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
        (Whole { stop, controller }, handle)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.controller).await;
    }
}

/// JSON size of an object, for comparing what the caches keep.
fn json_len<T: serde::Serialize>(t: &T) -> usize {
    serde_json::to_vec(t).unwrap().len()
}

/// After an API server restart a watch often gets 410 Gone (its resource version was
/// compacted away): the controller lists again at once, not after kube's default backoff
/// (0.8 s doubling to 30 s).
#[tokio::test]
async fn a_watch_that_gets_410_lists_again_at_once() {
    let (whole, mut handle) = Whole::start();
    let server = async move {
        let mut held = Vec::new();
        let (mut gone_at, mut pod_lists) = (None::<std::time::Instant>, 0);
        loop {
            let (req, send) = handle.next_request().await.expect("client alive");
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let reply = |code: u16, body: Vec<u8>| {
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap()
            };
            let is_pods = path == "/api/v1/pods";
            if query.contains("watch=true") {
                if is_pods && gone_at.is_none() {
                    let ev = json!({"type": "ERROR", "object": status_error(410, "Expired")});
                    let mut line = serde_json::to_vec(&ev).unwrap();
                    line.push(b'\n');
                    send.send_response(reply(200, line));
                    gone_at = Some(std::time::Instant::now());
                } else {
                    held.push(send);
                }
                continue;
            }
            let answer = match path.as_str() {
                "/apis/regcheck.dev/v1alpha1/registryconnectivitychecks" => list(
                    "RegistryConnectivityCheckList",
                    "regcheck.dev/v1alpha1",
                    vec![],
                ),
                "/apis/batch/v1/jobs" => list("JobList", "batch/v1", vec![]),
                "/api/v1/pods" => {
                    pod_lists += 1;
                    list("PodList", "v1", vec![])
                }
                other => panic!("unexpected request {other} {query}"),
            };
            send.send_response(reply(200, serde_json::to_vec(&answer).unwrap()));
            if is_pods && pod_lists == 2 {
                return (gone_at.expect("the list follows the 410").elapsed(), held);
            }
        }
    };
    let (waited, _held) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the pods were not listed again after 410 Gone");
    assert!(
        waited < Duration::from_millis(300),
        "re-listed {waited:?} after the 410"
    );
    whole.stop().await;
}

/// Pull canaries (context `kubelet`) against the mocked API server.
#[path = "canary_mock_tests.rs"]
mod canary_mock_tests;

// ---------------------------------------------------------------------------------------------
// Caps for a shared cluster (issue 13, finding 7)

/// An Explicit proxy on a port outside `--allowed-proxy-ports` (here ssh on a listed proxy
/// host) is refused before any Job exists, naming spec.proxy.url and the port.
#[tokio::test]
async fn proxy_on_a_port_outside_the_allowed_proxy_ports_is_refused() {
    let Setup { ctx, handle } = setup(with_policy("*", "*", "443", "proxy.corp.example"));
    let c = check(
        1,
        json!({"proxy": {"mode": "Explicit", "url": "http://proxy.corp.example:22"}}),
    );
    let steps = vec![
        patch_status(|s| {
            let ready = condition(s, "Ready");
            assert_eq!(ready["reason"], "TargetNotAllowed");
            let m = ready["message"].as_str().unwrap();
            assert!(m.starts_with("allowed-proxy-ports: "), "{m}");
            assert!(m.contains("spec.proxy.url") && m.contains("port 22"), "{m}");
        }),
        event("Warning", "TargetNotAllowed"),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    res.unwrap();
}

/// Strategy AllNodes whose plan has more nodes than `--max-nodes-per-run` is refused when the
/// run is planned: Ready=False naming the strategy and the count, and no Job is created.
#[tokio::test]
async fn all_nodes_beyond_max_nodes_per_run_is_refused_without_jobs() {
    let mut cfg = config();
    cfg.policy.caps.max_nodes_per_run = 1;
    let Setup { ctx, handle } = setup(cfg);
    let c = check(1, json!({"contexts": {"node": {"strategy": "AllNodes"}}}));
    let steps = vec![
        list_nodes(),
        patch_status(|s| {
            let ready = condition(s, "Ready");
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "TargetNotAllowed");
            let m = ready["message"].as_str().unwrap();
            assert!(m.starts_with("max-nodes-per-run: "), "{m}");
            assert!(
                m.contains("spec.contexts.node.strategy AllNodes plans 2 nodes"),
                "{m}"
            );
            assert!(m.contains("--max-nodes-per-run=1"), "{m}");
        }),
        event("Warning", "TargetNotAllowed"),
    ];
    let (res, _) = run_steps(&ctx, handle, c, steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(Duration::from_secs(300)));
}

/// `--max-probe-jobs-in-flight` counts every check's unfinished probe Jobs and pull canaries
/// in the caches, and the Jobs admitted a moment ago that the caches do not show yet: a run
/// with no room creates nothing and waits; with room for one, one Job; triggered again
/// before the cache shows it, none more.
#[tokio::test]
async fn max_probe_jobs_in_flight_holds_jobs_beyond_the_global_cap() {
    let Setup { ctx, handle } = setup(Config {
        max_probe_jobs_in_flight: 3,
        ..config()
    });
    let mut other = check(1, json!({}));
    other.metadata.name = Some("other".into());
    other.metadata.uid = Some("0f0e0d0c-0000-4000-8000-00000000beef".into());
    let others = jobs_of(&other, 1, "active");
    let mut done = jobs_of(&other, 2, "complete");
    done.truncate(1);
    // A pull canary of a third check, still pulling; and one that has ended.
    let canary = |name: &str, phase: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "team-c", "labels": {
                   "app.kubernetes.io/managed-by": "regcheck",
                   "regcheck.dev/context": "kubelet",
                   "regcheck.dev/check-uid": "0f0e0d0c-0000-4000-8000-00000000cafe"}},
               "status": {"phase": phase}})
    };
    cache(
        &ctx,
        &[&others[..2], &done[..]].concat(),
        &[
            canary("rcc-third-k-1", "Pending"),
            canary("rcc-third-k-2", "Failed"),
        ],
    );
    let c = check(1, json!({}));
    // 2 Jobs + 1 canary in flight (the finished Job and the ended canary do not count).
    let (res, handle) = run_steps(&ctx, handle, c.clone(), vec![list_nodes()]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(IN_FLIGHT_WAIT));
    assert!(
        ctx.metrics
            .render()
            .contains("regcheck_probe_jobs_held_total 1"),
        "{}",
        ctx.metrics.render()
    );
    assert!(
        !ctx.metrics
            .render()
            .contains("regcheck_probe_jobs_created_total")
    );
    // One of the other check's Jobs is gone: room for one.
    ctx.caches.forget_jobs(&others[..1]);
    let steps = vec![list_nodes(), create_job(PROBE_NS, "r1", "node", 201)];
    let (res, handle) = run_steps(&ctx, handle, c.clone(), steps).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    // The cache does not show it yet: it still counts, nothing more is created.
    let (res, _) = run_steps(&ctx, handle, c, vec![list_nodes()]).await;
    assert_eq!(res.unwrap(), Requeue::requeue(decide::POLL_RUNNING));
    assert!(
        ctx.metrics
            .render()
            .contains(r#"regcheck_probe_jobs_created_total{context="node"} 1"#),
        "{}",
        ctx.metrics.render()
    );
}

//! Counts the controller's requests to the API server (`regcheck_api_requests_total{verb,
//! resource}`): a tower layer on the kube client that classifies each request's method, path and
//! query ([`classify`], pure) and bumps a counter before passing the request on.
//!
//! Labels come from fixed sets: the Kubernetes verb (`get`, `list`, `watch`, `create`, `update`,
//! `patch`, `delete`, `deletecollection`, `other`) and the resources the controller uses (plus
//! `other`), never names or namespaces.

use super::metrics::Metrics;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Resources the controller talks to; anything else is counted as `other`.
const RESOURCES: &[&str] = &[
    "registryconnectivitychecks",
    "registryconnectivitychecks/status",
    "jobs",
    "pods",
    "nodes",
    "namespaces",
    "events",
    "leases",
];

/// The Kubernetes verb and resource of a request: `GET` on a collection is `list` (or `watch`
/// with `watch=true`), on a named object `get`; `DELETE` on a collection is
/// `deletecollection`. The resource is the path's plural, with `/status` for that subresource.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> (&'static str, &'static str) {
    // /api/v1/[namespaces/NS/]PLURAL[/NAME[/SUB]] or /apis/GROUP/VERSION/[namespaces/NS/]...
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _v, rest @ ..] => rest,
        ["apis", _g, _v, rest @ ..] => rest,
        _ => &[],
    };
    // A namespaced path; `namespaces/NAME` alone (or `namespaces`) is the namespace itself.
    let rest = match rest {
        ["namespaces", _ns, more @ ..] if !more.is_empty() => more,
        _ => rest,
    };
    let (plural, name, sub) = match rest {
        [p] => (Some(*p), None, None),
        [p, n] => (Some(*p), Some(*n), None),
        [p, n, s, ..] => (Some(*p), Some(*n), Some(*s)),
        _ => (None, None, None),
    };
    let watching = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
    });
    let verb = match (method, name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    let full = match (plural, sub) {
        (Some(p), Some(s)) => format!("{p}/{s}"),
        (Some(p), None) => p.to_string(),
        _ => String::new(),
    };
    let resource = RESOURCES
        .iter()
        .find(|r| **r == full)
        .copied()
        .unwrap_or("other");
    (verb, resource)
}

/// The layer: wrap the kube client's service with it (`ClientBuilder::with_layer`).
#[derive(Clone)]
pub struct ApiCountLayer {
    metrics: Arc<Metrics>,
}

impl ApiCountLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for ApiCountLayer {
    type Service = ApiCount<S>;
    fn layer(&self, inner: S) -> ApiCount<S> {
        ApiCount {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`ApiCountLayer`]: counts, then calls the inner service unchanged.
#[derive(Clone)]
pub struct ApiCount<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for ApiCount<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (verb, resource) = classify(req.method().as_str(), req.uri().path(), req.uri().query());
        self.metrics.api_request(verb, resource);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_controllers_requests() {
        let cases = [
            (
                "GET",
                "/apis/batch/v1/namespaces/ns/jobs",
                Some("labelSelector=a%3Db"),
                ("list", "jobs"),
            ),
            (
                "GET",
                "/apis/batch/v1/namespaces/ns/jobs",
                Some("labelSelector=x&watch=true&resourceVersion=5"),
                ("watch", "jobs"),
            ),
            (
                "GET",
                "/apis/batch/v1/jobs",
                Some("watch=true"),
                ("watch", "jobs"),
            ),
            (
                "POST",
                "/apis/batch/v1/namespaces/ns/jobs",
                Some(""),
                ("create", "jobs"),
            ),
            (
                "DELETE",
                "/apis/batch/v1/namespaces/ns/jobs",
                Some("labelSelector=x"),
                ("deletecollection", "jobs"),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods",
                Some("labelSelector=x"),
                ("list", "pods"),
            ),
            ("GET", "/api/v1/nodes", None, ("list", "nodes")),
            (
                "GET",
                "/api/v1/namespaces/team-a",
                None,
                ("get", "namespaces"),
            ),
            (
                "PATCH",
                "/apis/regcheck.dev/v1alpha1/namespaces/ns/registryconnectivitychecks/c1/status",
                Some("fieldManager=regcheck-controller&force=true"),
                ("patch", "registryconnectivitychecks/status"),
            ),
            (
                "PATCH",
                "/apis/regcheck.dev/v1alpha1/namespaces/ns/registryconnectivitychecks/c1",
                None,
                ("patch", "registryconnectivitychecks"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/ns/events",
                None,
                ("create", "events"),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/regcheck-system/leases/l",
                None,
                ("update", "leases"),
            ),
            ("GET", "/version", None, ("list", "other")),
            ("GET", "/api/v1/secrets", None, ("list", "other")),
            ("OPTIONS", "/api/v1/pods", None, ("other", "pods")),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                classify(method, path, query),
                want,
                "{method} {path} {query:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_layer_counts_each_request_and_passes_it_on() {
        use tower::{Layer, Service};
        let metrics = Arc::new(Metrics::new());
        let (mock, mut handle) = tower_test::mock::pair::<http::Request<()>, &'static str>();
        let mut svc = ApiCountLayer::new(metrics.clone()).layer(mock);
        let req = || {
            http::Request::get("https://127.0.0.1:6443/api/v1/namespaces/ns/pods?labelSelector=a")
                .body(())
                .unwrap()
        };
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (r, send) = handle.next_request().await.expect("a request");
                assert_eq!(r.uri().path(), "/api/v1/namespaces/ns/pods");
                send.send_response("ok");
            }
        });
        for _ in 0..2 {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            assert_eq!(svc.call(req()).await.unwrap(), "ok");
        }
        server.await.unwrap();
        let text = metrics.render();
        assert!(
            text.contains(r#"regcheck_api_requests_total{verb="list",resource="pods"} 2"#),
            "{text}"
        );
    }
}

//! The controller's HTTP endpoints: `/metrics` (OpenMetrics text), `/healthz` (the process is
//! alive) and `/readyz` (watches started, or standing by for the leader).

use super::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    /// Every watch has listed its objects once.
    pub watching: Arc<AtomicBool>,
    /// Another replica leads; this one waits to take over (ready, so that rollouts proceed).
    pub standing_by: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.watching.load(Ordering::SeqCst) || self.standing_by.load(Ordering::SeqCst)
    }
}

/// The response to one request (pure apart from reading the metrics and health state).
pub fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" if health.ready() => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "watches not started\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accepting a metrics connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = respond(req.method(), req.uri().path(), &metrics, &health);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn routes() {
        let m = Metrics::new();
        m.run(super::super::metrics::RunResult::Healthy);
        let h = Health::default();
        assert_eq!(respond(&Method::GET, "/healthz", &m, &h).status(), 200);
        assert_eq!(respond(&Method::GET, "/readyz", &m, &h).status(), 503);
        h.standing_by.store(true, Ordering::SeqCst);
        assert_eq!(respond(&Method::GET, "/readyz", &m, &h).status(), 200);
        h.standing_by.store(false, Ordering::SeqCst);
        h.watching.store(true, Ordering::SeqCst);
        assert_eq!(respond(&Method::GET, "/readyz", &m, &h).status(), 200);
        assert_eq!(respond(&Method::GET, "/nope", &m, &h).status(), 404);
        assert_eq!(respond(&Method::POST, "/metrics", &m, &h).status(), 405);
        let r = respond(&Method::GET, "/metrics", &m, &h);
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
    }

    /// A real request over loopback.
    #[tokio::test]
    async fn serves_over_loopback() {
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        m.run(super::super::metrics::RunResult::Degraded);
        let server = tokio::spawn(serve(l, m, Arc::new(Health::default())));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.read_to_string(&mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
        assert!(
            buf.contains("regcheck_runs_total{result=\"degraded\"} 1"),
            "{buf}"
        );
        server.abort();
    }
}

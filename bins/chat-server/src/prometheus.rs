//! `GET /metrics`: the Prometheus text format of every series the crates record (see
//! `chat_core::metrics` for the catalogue).
//!
//! Why the `metrics` facade with `metrics-exporter-prometheus`: the library crates record
//! through the facade and know no exporter, so whoever embeds them plugs in the recorder of
//! their choice; this binary is the one place that picks Prometheus. The exporter is built
//! without its HTTP listener: `/metrics` is served here, by our own hyper stack, either on the
//! main listener (to loopback peers only) or on `--metrics-bind`'s own listener.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chat_core::metrics as m;
use http::{Method, Request, StatusCode};
use hyper::service::service_fn;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, ShardedCounters};

type Resp = http::Response<http_body_util::Full<bytes::Bytes>>;

fn with_body(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut res = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res
}

fn text(status: StatusCode, body: &str) -> Resp {
    with_body(status, "text/plain; charset=utf-8", body.to_owned())
}

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histograms are folded in when nobody scrapes (their samples wait in buffers until
/// then).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Buckets of the `_seconds` histograms: 0.5 ms to 10 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the store's batch sizes.
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Buckets of `group_send` fan-outs.
const MEMBERS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// What renders `/metrics`: the Prometheus recorder's handle, and the counters to fold into
/// it first (see [`crate::counters`]).
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    counters: Arc<Counters>,
}

impl Exporter {
    /// Every series in the Prometheus text format, counters up to date.
    fn render(&self) -> String {
        self.counters.fold();
        self.handle.render()
    }
}

/// Installs the Prometheus recorder, its counters sharded per thread, as the process's
/// `metrics` recorder. Call once, before anything records (the crates keep hot-path handles
/// from their first use).
pub fn install() -> Result<Exporter, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(m::STORE_BATCH_SIZE.into()), BATCH))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(m::GROUP_SEND_MEMBERS.into()), MEMBERS)
        })
        .map_err(|e| format!("cannot configure the metrics recorder: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    let (recorder, counters) = ShardedCounters::new(recorder);
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    m::describe();
    Ok(Exporter { handle, counters })
}

/// Folds histogram samples in every few seconds until `shutdown`, so they never pile up
/// between scrapes.
pub fn spawn_upkeep(exporter: Exporter, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => exporter.handle.run_upkeep(),
            }
        }
    });
}

/// The scrape itself.
fn render(exporter: &Exporter) -> Resp {
    with_body(StatusCode::OK, CONTENT_TYPE, exporter.render())
}

/// Whether a request on the main listener may read `/metrics`: only from this machine, and
/// never through a proxy. A reverse proxy on the same machine connects from loopback too, for
/// whoever its client is: a request that carries a forwarding header came through one.
pub fn may_scrape(peer: IpAddr, headers: &http::HeaderMap) -> bool {
    let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    peer.to_canonical().is_loopback() && !forwarded
}

/// `/metrics` on the main listener: 404 when it is served on its own listener
/// (`--metrics-bind`), 403 to anyone but a local, unproxied peer.
pub fn on_main_listener<B>(
    metrics: Option<&Exporter>,
    peer: Option<SocketAddr>,
    req: &Request<B>,
) -> Resp {
    let Some(exporter) = metrics else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if !peer.is_some_and(|p| may_scrape(p.ip(), req.headers())) {
        return text(
            StatusCode::FORBIDDEN,
            "/metrics answers local requests only; use --metrics-bind to serve it elsewhere",
        );
    }
    render(exporter)
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `shutdown`: the
/// `--metrics-bind` listener, for a scraper on a private network.
pub async fn serve_listener(
    listener: TcpListener,
    exporter: Exporter,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let res = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics") => render(&exporter),
            (_, "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => text(StatusCode::NOT_FOUND, "only /metrics is served here"),
        };
        std::future::ready(Ok::<_, Infallible>(res))
    });
    chat_rooms::server::serve(listener, service, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_unproxied_peers_may_scrape() {
        let none = http::HeaderMap::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(may_scrape(ip("127.0.0.1"), &none));
        assert!(may_scrape(ip("127.0.0.2"), &none));
        assert!(may_scrape(ip("::1"), &none));
        assert!(may_scrape(ip("::ffff:127.0.0.1"), &none));
        assert!(!may_scrape(ip("10.0.0.5"), &none));
        assert!(!may_scrape(ip("192.168.1.20"), &none));
        assert!(!may_scrape(ip("2001:db8::1"), &none));
        let mut proxied = http::HeaderMap::new();
        proxied.insert(
            "x-forwarded-for",
            http::HeaderValue::from_static("203.0.113.9"),
        );
        assert!(!may_scrape(ip("127.0.0.1"), &proxied));
        let mut forwarded = http::HeaderMap::new();
        forwarded.insert(
            http::header::FORWARDED,
            http::HeaderValue::from_static("for=1.2.3.4"),
        );
        assert!(!may_scrape(ip("127.0.0.1"), &forwarded));
    }
}

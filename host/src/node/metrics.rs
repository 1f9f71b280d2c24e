//! A node's own metrics, per partition: whether it holds the lease, its
//! term, how long taking over took, and what it forwarded. A scrape of an
//! owner gets the service's metrics and these; a scrape of a follower gets
//! these only (its service does not run), so every node is scraped for
//! what it does and nothing is counted twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use subtle::ConstantTimeEq;
use tower::ServiceExt;

use super::{Node, PARTITION};

#[derive(Default)]
pub(super) struct NodeMetrics {
    forwarded: AtomicU64,
    /// Forwards answered 503: no owner reachable.
    unavailable: AtomicU64,
    takeovers: AtomicU64,
    takeover_micros: AtomicU64,
}

impl NodeMetrics {
    pub(super) fn forwarded(&self, status: StatusCode) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            self.unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn took_over(&self, took: Duration) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
        self.takeover_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, node: &Node) -> String {
        let partition = PARTITION.0;
        let term = node.term.read().expect("term lock").unwrap_or(0);
        let owner = u8::from(node.app.read().expect("app lock").is_some());
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "# HELP flowgate_cluster_owner Whether this node holds the partition's lease and processes its work.\n\
             # TYPE flowgate_cluster_owner gauge\n\
             flowgate_cluster_owner{{partition=\"{partition}\"}} {owner}\n\
             # HELP flowgate_cluster_lease_term The lease term this node holds the partition by (0: none).\n\
             # TYPE flowgate_cluster_lease_term gauge\n\
             flowgate_cluster_lease_term{{partition=\"{partition}\"}} {term}\n\
             # HELP flowgate_cluster_takeovers_total Times this node took the partition over.\n\
             # TYPE flowgate_cluster_takeovers_total counter\n\
             flowgate_cluster_takeovers_total{{partition=\"{partition}\"}} {}\n\
             # HELP flowgate_cluster_takeover_seconds How long the last takeover took, from the lease to serving (the log replayed).\n\
             # TYPE flowgate_cluster_takeover_seconds gauge\n\
             flowgate_cluster_takeover_seconds{{partition=\"{partition}\"}} {:.3}\n\
             # HELP flowgate_cluster_forwarded_total Requests this node forwarded to the partition's owner.\n\
             # TYPE flowgate_cluster_forwarded_total counter\n\
             flowgate_cluster_forwarded_total{{partition=\"{partition}\"}} {}\n\
             # HELP flowgate_cluster_forward_unavailable_total Forwarded requests answered 503: no owner could be reached.\n\
             # TYPE flowgate_cluster_forward_unavailable_total counter\n\
             flowgate_cluster_forward_unavailable_total{{partition=\"{partition}\"}} {}\n",
            load(&self.takeovers),
            load(&self.takeover_micros) as f64 / 1e6,
            load(&self.forwarded),
            load(&self.unavailable),
        )
    }
}

/// `/metrics` on a node: the operator's token is checked (by the service
/// on an owner, here on a follower), then the service's metrics if this
/// node runs it, then the node's.
pub(super) async fn answer(
    node: &Node,
    app: Option<axum::Router>,
    request: Request<Body>,
) -> Response<Body> {
    let mut text = String::new();
    match app {
        Some(app) => {
            let answer = app
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            if answer.status() != StatusCode::OK {
                return answer;
            }
            let body = axum::body::to_bytes(answer.into_body(), 16 << 20)
                .await
                .unwrap_or_default();
            text.push_str(&String::from_utf8_lossy(&body));
        }
        None => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(|token| blake3::hash(token.as_bytes()));
            let expected = blake3::hash(node.config.operator_token.as_bytes());
            let allowed = presented.is_some_and(|presented| {
                bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
            });
            if !allowed {
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(Body::empty())
                    .expect("a valid response");
            }
        }
    }
    text.push_str(&node.metrics.render(node));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(text))
        .expect("a valid response")
}

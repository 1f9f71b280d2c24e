//! Passing a request on to the node that processes the work: any node
//! takes webhooks and API calls, and one that does not hold the lease
//! forwards them, whole, to the one that does, and its answer back.
//!
//! A webhook is acknowledged only by the owner, after its delivery is in
//! the replicated log: a forwarding node that dies mid-request leaves the
//! sender without a 200, and WhatsApp delivers again. A forwarded request
//! carries [`FORWARDED`], and a node that gets one without holding the
//! lease answers 503 rather than forward it again: two nodes with stale
//! ideas of who the owner is must not bounce a request between them.
//!
//! **The client's address travels with it.** The owner throttles failed
//! sign-ins and requests per client address; seen from the owner, every
//! forwarded request comes from the forwarding node, so one client's bad
//! keys would throttle everyone that node forwards. The forwarder names
//! the address it saw in [`CLIENT`], with a keyed hash of it in [`PROOF`]
//! (the key derived from the master key, which every node and no client
//! has); the owner counts that address when the proof holds, and the
//! forwarder's otherwise.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};

/// Marks a request one node forwarded to another.
pub const FORWARDED: &str = "flowgate-forwarded-by";

/// The client address the forwarding node saw.
pub const CLIENT: &str = "flowgate-forwarded-for";

/// A keyed hash of [`CLIENT`]'s value: the forwarder vouches for it.
pub const PROOF: &str = "flowgate-forwarded-proof";

/// Vouches for the client addresses forwarders pass on.
pub struct AddressSeal([u8; 32]);

impl AddressSeal {
    /// The seal every node of the cluster derives from the master key.
    pub fn new(master: &crate::crypto::SecretKey) -> AddressSeal {
        AddressSeal(master.derive_32("flowgate 2026 cluster forwarded client address"))
    }

    fn proof(&self, address: &str) -> String {
        blake3::keyed_hash(&self.0, address.as_bytes())
            .to_hex()
            .to_string()
    }

    /// On the owner: the client address a forwarder vouched for, as the
    /// connection's peer of `request`, replacing the forwarder's. The
    /// headers are removed either way, so nothing further in sees them.
    pub fn restore<B>(&self, request: &mut Request<B>) {
        let headers = request.headers_mut();
        let address = headers
            .remove(CLIENT)
            .and_then(|value| value.to_str().ok().map(str::to_owned));
        let proof = headers
            .remove(PROOF)
            .and_then(|value| value.to_str().ok().map(str::to_owned));
        let (Some(address), Some(proof)) = (address, proof) else {
            return;
        };
        let expected = self.proof(&address);
        let vouched: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), proof.as_bytes()).into();
        if let (true, Ok(ip)) = (vouched, address.parse::<std::net::IpAddr>()) {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(ip, 0)));
        }
    }
}

/// Headers that describe one connection, not the request: never passed on
/// (RFC 9110 §7.6.1), and `host`/`content-length`, which the client sets.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
    // Set by this node only, never passed on from the client.
    HeaderName::from_static(CLIENT),
    HeaderName::from_static(PROOF),
];

fn passed_on(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(name))
}

/// An answer the node gives itself (no owner to forward to, or it could
/// not be reached): 503 with `Retry-After`, which WhatsApp and the API's
/// clients retry.
pub fn unavailable(reason: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": "unavailable", "message": reason}});
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// Forward `request` to the node at `base` (`http://host:port`), as node
/// `by`; `limit` bounds the body read (the owner applies the exact limits
/// of each route).
pub async fn forward(
    client: &reqwest::Client,
    base: &str,
    by: &str,
    seal: &AddressSeal,
    request: Request<Body>,
    limit: usize,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return Response::builder()
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .body(Body::empty())
                .expect("a valid response");
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let mut outgoing = client
        .request(parts.method, format!("{base}{path}"))
        .body(body);
    for (name, value) in passed_on(&parts.headers) {
        outgoing = outgoing.header(name, value);
    }
    outgoing = outgoing.header(FORWARDED, by);
    if let Some(peer) = peer {
        outgoing = outgoing
            .header(PROOF, seal.proof(&peer))
            .header(CLIENT, peer);
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, owner = base, "forwarding a request to the owner failed");
            return unavailable("the node processing this request could not be reached; retry");
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in passed_on(answer.headers()) {
        response = response.header(name, value);
    }
    match answer.bytes().await {
        Ok(bytes) => response.body(Body::from(bytes)).expect("a valid response"),
        // The owner died while answering: whether it acted is unknown to
        // this node, as it would be to a client talking to it directly.
        Err(_) => unavailable("the node processing this request stopped answering; retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_not_passed_on_and_the_rest_are() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::HOST, HeaderValue::from_static("a:1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert("x-hub-signature-256", HeaderValue::from_static("sha256=00"));
        let names: Vec<&str> = passed_on(&headers).map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["authorization", "x-hub-signature-256"]);
    }

    fn forwarded(address: &str, proof: &str) -> Request<()> {
        Request::builder()
            .header(CLIENT, address)
            .header(PROOF, proof)
            .body(())
            .unwrap()
    }

    fn peer(request: &Request<()>) -> Option<std::net::IpAddr> {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
    }

    #[test]
    fn a_client_address_counts_only_when_a_node_of_the_cluster_vouched_for_it() {
        let master = crate::crypto::SecretKey::generate();
        let seal = AddressSeal::new(&master);
        let mut vouched = forwarded("203.0.113.9", &seal.proof("203.0.113.9"));
        seal.restore(&mut vouched);
        assert_eq!(peer(&vouched), Some("203.0.113.9".parse().unwrap()));
        assert!(vouched.headers().get(CLIENT).is_none(), "removed once read");
        // A client naming an address, with a proof made for another one or
        // under another key, is counted as its own connection.
        let mut reused = forwarded("198.51.100.1", &seal.proof("203.0.113.9"));
        seal.restore(&mut reused);
        assert_eq!(peer(&reused), None);
        let other = AddressSeal::new(&crate::crypto::SecretKey::generate());
        let mut forged = forwarded("198.51.100.1", &other.proof("198.51.100.1"));
        seal.restore(&mut forged);
        assert_eq!(peer(&forged), None);
        assert!(forged.headers().get(PROOF).is_none());
    }
}

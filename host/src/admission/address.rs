//! The client a request comes from, as the throttles count it.
//!
//! - The connection's peer address, or, when a reverse proxy you trust is
//!   named (`http.client_address_header`), the **last** address of that
//!   header: the one the proxy itself saw. The ones before it are whatever
//!   the client sent (a proxy appends to `X-Forwarded-For`), and reading
//!   the first, as the console once did, let a client name a new address
//!   on every attempt and get a new allowance each time.
//! - An IPv6 client counts by its /64: one subscriber is usually given a
//!   whole /64, so counting single IPv6 addresses would give one client
//!   2^64 allowances. An IPv4-mapped IPv6 address counts as the IPv4 one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::config::ServiceConfig;

/// A client, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddress {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
    /// No address is known: requests not served from a socket (tests that
    /// drive the router directly). They share one allowance.
    Unknown,
}

impl ClientAddress {
    /// The client at `ip`.
    pub fn of(ip: IpAddr) -> ClientAddress {
        match ip {
            IpAddr::V4(v4) => ClientAddress::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddress::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    ClientAddress::V6Prefix(prefix)
                }
            },
        }
    }

    /// The client of a request: the last address of the trusted header
    /// when one is configured and holds one, the connection's peer
    /// otherwise.
    pub fn of_request(parts: &Parts, config: &ServiceConfig) -> ClientAddress {
        let forwarded = config
            .http
            .client_address_header(&config.console)
            .and_then(|name| parts.headers.get_all(name).iter().next_back())
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        };
        forwarded
            .or_else(peer)
            .map_or(ClientAddress::Unknown, ClientAddress::of)
    }

    /// The bytes that identify it (for keyed hashes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ClientAddress::V4(octets) => octets,
            ClientAddress::V6Prefix(prefix) => prefix,
            ClientAddress::Unknown => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn trusting(header: Option<&str>) -> ServiceConfig {
        let mut config = ServiceConfig::default();
        config.http.client_address_header = header.map(str::to_owned);
        config
    }

    fn parts(peer: &str, forwarded: &[&str]) -> Parts {
        let mut request = Request::builder();
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    #[test]
    fn the_proxys_own_entry_counts_not_what_the_client_wrote_before_it() {
        let ip = |text: &str| ClientAddress::of(text.parse().unwrap());
        let header = &trusting(Some("x-forwarded-for"));
        // The client wrote 1.2.3.4; the proxy appended what it saw.
        let spoofed = parts("10.0.0.1:5000", &["1.2.3.4, 203.0.113.9"]);
        assert_eq!(
            ClientAddress::of_request(&spoofed, header),
            ip("203.0.113.9")
        );
        // A second header line, appended by the proxy, counts over the first.
        let two_lines = parts("10.0.0.1:5000", &["1.2.3.4", "203.0.113.9"]);
        assert_eq!(
            ClientAddress::of_request(&two_lines, header),
            ip("203.0.113.9")
        );
        // Without a trusted header, or with nothing usable in it, the peer.
        assert_eq!(
            ClientAddress::of_request(&spoofed, &trusting(None)),
            ip("10.0.0.1")
        );
        // The console's older setting still names the header.
        let mut older = ServiceConfig::default();
        older.console.client_address_header = Some("x-forwarded-for".into());
        assert_eq!(
            ClientAddress::of_request(&spoofed, &older),
            ip("203.0.113.9")
        );
        let garbage = parts("10.0.0.1:5000", &["not an address"]);
        assert_eq!(ClientAddress::of_request(&garbage, header), ip("10.0.0.1"));
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let ip = |text: &str| ClientAddress::of(text.parse().unwrap());
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        let no_peer = Request::builder().body(()).unwrap().into_parts().0;
        assert_eq!(
            ClientAddress::of_request(&no_peer, &trusting(Some("x-forwarded-for"))),
            ClientAddress::Unknown
        );
    }
}

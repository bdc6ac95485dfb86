//! The client's address: who sent a request, as far as this server can tell.
//!
//! The peer address of the connection, unless the peer is a trusted proxy
//! (`--trusted-proxy`, a list of [`Cidr`] ranges): then the right-most address in
//! `X-Forwarded-For` that is not itself a trusted proxy is the client. Every address left of that
//! one was written by the client and proves nothing, and a header from an untrusted peer is ignored
//! entirely.
//!
//! Login throttling counts failures per client address ([`crate::throttle`]) and audit events
//! record it ([`crate::audit`]); both ask [`client_ip`]. This module imports nothing else of the
//! server.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use actix_web::HttpRequest;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(ip), prefix))),
            IpAddr::V6(ip) => IpAddr::V6(mask_v6(u128::from(ip), prefix).into()),
        };
        if masked != network {
            return Err(format!(
                "`{text}` has bits set after the prefix; did you mean {masked}/{prefix}?"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address
/// of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        // A header from an untrusted peer was written by the client: ignore it entirely.
        return peer;
    }
    let lines: Vec<Option<&str>> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|value| value.to_str().ok())
        .collect();
    let mut client = peer;
    // Walk from the nearest hop outwards, through the proxies we trust, to the first one we do
    // not: that is who connected to our outermost proxy. Anything unreadable stops the walk.
    for line in lines.iter().rev() {
        let Some(line) = line else { return client };
        for hop in line.rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The `/prefix` network an IPv6 address belongs to (`2001:db8:1:2::/64` for any address in it).
pub fn ipv6_network(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    Ipv6Addr::from(mask_v6(u128::from(ip), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn cidr(text: &str) -> Cidr {
        match text.parse() {
            Ok(c) => c,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn cidr_ranges_parse_and_match() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!cidr("10.0.0.0/8").contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))));
        assert!(cidr("127.0.0.1").contains(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!cidr("127.0.0.1").contains(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert!(cidr("0.0.0.0/0").contains(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert!(cidr("192.0.2.0/24").contains(ip("::ffff:192.0.2.9")));
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn from_peer(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(match peer.parse() {
            Ok(addr) => addr,
            Err(e) => panic!("{peer}: {e}"),
        });
        for value in forwarded {
            req = req.append_header(("X-Forwarded-For", *value));
        }
        req.to_http_request()
    }

    fn ip(text: &str) -> IpAddr {
        match text.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_peer() {
        let trusted = [cidr("10.0.0.0/8")];
        let untrusted = from_peer("203.0.113.5:4000", &["198.51.100.1"]);
        assert_eq!(client_ip(&untrusted, &trusted), ip("203.0.113.5"));
        let proxied = from_peer("10.0.0.2:4000", &["198.51.100.1"]);
        assert_eq!(client_ip(&proxied, &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(&proxied, &[]), ip("10.0.0.2"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = [cidr("10.0.0.0/8")];
        // The client wrote the first entry itself; our proxies appended the rest.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1, 198.51.100.7, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("198.51.100.7"));
        // The same across several header lines.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1", "198.51.100.7", "10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("198.51.100.7"));
        // Garbage stops the walk at the last address we could read.
        let req = from_peer("10.0.0.2:1", &["1.1.1.1, nonsense, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("10.0.0.9"));
        // Ports and brackets are tolerated.
        let req = from_peer("10.0.0.2:1", &["[2001:db8::1]:443"]);
        assert_eq!(client_ip(&req, &trusted), ip("2001:db8::1"));
        // Nothing but trusted hops: the outermost of them.
        let req = from_peer("10.0.0.2:1", &["10.0.0.7, 10.0.0.9"]);
        assert_eq!(client_ip(&req, &trusted), ip("10.0.0.7"));
    }
}

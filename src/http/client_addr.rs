//! The client's address, seen through the reverse proxies we were told to trust.
//!
//! Behind a load balancer every connection comes from the balancer's address, so a per-address
//! limit would throttle all users together. A proxy appends the address it received the request
//! from to `X-Forwarded-For`; reading that list from the right, past the proxies we trust, gives
//! the first address no trusted proxy vouches for: the client (or whoever claims to be a proxy in
//! front of ours, which is as far as anyone can know). Entries to its left are the client's to
//! write, so they are never believed.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed. Empty (the default): the TCP peer is the
/// client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges (`10.0.0.0/8, ::1`).
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(range)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The address a request comes from: `peer` unless it is a trusted proxy, in which case the
    /// rightmost entry of `X-Forwarded-For` that isn't one. An entry that isn't an address ends
    /// the walk at the last trusted hop, as nginx's `real_ip_recursive` does.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Several header lines are one list, in order (RFC 9110 §5.3).
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for hop in hops.rev() {
            let Ok(addr) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = addr.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// A CIDR range, or one address as the range of just itself. IPv4-mapped IPv6 addresses
/// (`::ffff:10.0.0.1`) are taken as the IPv4 ones, as the peer addresses they are compared with.
fn range(s: &str) -> Result<IpNet, String> {
    let bad = || format!("{s:?} is not an IP address or a CIDR range (10.0.0.0/8)");
    match s.parse::<IpNet>() {
        Ok(net) => match net.addr().to_canonical() {
            IpAddr::V4(v4) if net.addr().is_ipv6() => {
                let prefix = net.prefix_len().checked_sub(96).ok_or_else(bad)?;
                IpNet::new(IpAddr::V4(v4), prefix).map_err(|_| bad())
            }
            _ => Ok(net.trunc()),
        },
        Err(_) => s
            .parse::<IpAddr>()
            .map(|a| IpNet::from(a.to_canonical()))
            .map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let p = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,").unwrap();
        assert!(p.trusts(ip("10.200.3.4")));
        assert!(p.trusts(ip("192.168.1.7")));
        assert!(!p.trusts(ip("192.168.1.8")));
        assert!(p.trusts(ip("fd12::1")));
        assert!(!p.trusts(ip("fe80::1")));
        assert!(!p.trusts(ip("11.0.0.1")));
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .trusts(ip("8.8.8.8"))
        );
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "proxy.local",
            "10.0.0.1/x",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_peer() {
        let p = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(p.client_addr(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        // A client connecting directly can't pick its address by sending the header.
        assert_eq!(p.client_addr(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Nothing trusted: the peer, whatever the header says.
        let none = TrustedProxies::default();
        assert_eq!(none.client_addr(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let p = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client wrote a fake first entry; our two proxies appended the rest.
        let h = headers(&["6.6.6.6, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(p.client_addr(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        // No header, or one that is all proxies: the leftmost trusted hop.
        assert_eq!(
            p.client_addr(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        let h = headers(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(p.client_addr(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // Garbage ends the walk at the last address that parsed.
        let h = headers(&["203.0.113.9, unknown, 10.1.1.1"]);
        assert_eq!(p.client_addr(ip("10.0.0.2"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let p = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&["::ffff:203.0.113.9"]);
        assert_eq!(p.client_addr(ip("::ffff:10.0.0.2"), &h), ip("203.0.113.9"));
    }
}

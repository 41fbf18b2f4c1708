//! How many client sockets fit: the open-file limit and the ephemeral ports of each source
//! address. Checked before connecting, so a run that can't fit says so plainly instead of
//! failing halfway with `EMFILE` or `EADDRNOTAVAIL`.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, bail};

/// File descriptors kept free for everything that is not a client socket: the runtime's epoll
/// and eventfd, stdio, `/proc` reads, the JSON output file.
const RESERVED_FDS: u64 = 64;

/// How many sockets the automatic choice puts on one source address. Well below the usual
/// 28,232 ephemeral ports, so ports left in TIME_WAIT by earlier runs don't run it out.
const AUTO_SOCKETS_PER_ADDR: usize = 10_000;

/// The source addresses client sockets are bound to, in round-robin order. Empty means "let
/// the kernel choose".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

impl SourceAddrs {
    /// Parses `--source-ips`: `auto`, `none`, a range `127.0.0.2-127.0.0.9`, or a
    /// comma-separated list of addresses and ranges.
    ///
    /// `auto` picks enough loopback addresses from 127.0.0.2 up for `sockets` connections to a
    /// loopback IPv4 server, and none otherwise (a remote server would not see 127.0.0.x).
    pub fn parse(spec: &str, sockets: usize, targets_loopback_v4: bool) -> anyhow::Result<Self> {
        match spec.trim() {
            "auto" => {
                if !targets_loopback_v4 {
                    return Ok(Self(Vec::new()));
                }
                let count = sockets.div_ceil(AUTO_SOCKETS_PER_ADDR).clamp(1, 250);
                Ok(Self(
                    (0..count)
                        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
                        .collect(),
                ))
            }
            "none" | "" => Ok(Self(Vec::new())),
            list => {
                let mut addrs = Vec::new();
                for item in list.split(',').map(str::trim) {
                    match item.split_once('-') {
                        Some((from, to)) => addrs.extend(range(from, to)?),
                        None => addrs.push(
                            item.parse()
                                .with_context(|| format!("--source-ips: bad address {item:?}"))?,
                        ),
                    }
                }
                Ok(Self(addrs))
            }
        }
    }

    /// The address for the `i`-th connection, if any are set.
    pub fn for_index(&self, i: usize) -> Option<IpAddr> {
        (!self.0.is_empty()).then(|| self.0[i % self.0.len()])
    }
}

/// The IPv4 addresses from `from` to `to`, both included.
fn range(from: &str, to: &str) -> anyhow::Result<Vec<IpAddr>> {
    let parse = |s: &str| -> anyhow::Result<u32> {
        let ip: Ipv4Addr = s
            .trim()
            .parse()
            .with_context(|| format!("--source-ips: bad IPv4 address {s:?} in a range"))?;
        Ok(u32::from(ip))
    };
    let (from, to) = (parse(from)?, parse(to)?);
    if to < from {
        bail!("--source-ips: the range ends before it starts");
    }
    if to - from >= 4096 {
        bail!("--source-ips: a range may hold at most 4096 addresses");
    }
    Ok((from..=to).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force.
pub fn raise_open_file_limit() -> anyhow::Result<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!(
                "getrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            );
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        Ok(limit.rlim_cur)
    }
}

/// The ephemeral port range (`net.ipv4.ip_local_port_range`), as the number of ports in it.
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_port_range(&text))
        // The kernel's default range, 32768–60999.
        .unwrap_or(28_232)
}

fn parse_port_range(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
    let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
    (high >= low).then(|| high - low + 1)
}

/// Refuses, with a message saying what to change, when `sockets` connections can't fit in
/// the open-file limit or in the ports of the source addresses (`addrs` of them, 0 meaning
/// one address chosen by the kernel).
pub fn check(
    sockets: usize,
    open_file_limit: u64,
    addrs: usize,
    ports_per_addr: u64,
) -> anyhow::Result<()> {
    let sockets = sockets as u64;
    if sockets + RESERVED_FDS > open_file_limit {
        bail!(
            "{sockets} connections need about {} file descriptors, but this process may open \
             {open_file_limit} (the hard limit of `ulimit -n`). Use fewer --users, raise the hard \
             limit, or run several confab-bench processes",
            sockets + RESERVED_FDS
        );
    }
    let ports = ports_per_addr * addrs.max(1) as u64;
    if sockets > ports {
        bail!(
            "{sockets} connections need more source ports than {} source address(es) with \
             {ports_per_addr} ephemeral ports each provide. Give more addresses with \
             --source-ips (for example 127.0.0.2-127.0.0.9)",
            addrs.max(1)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_lists() {
        let addrs = SourceAddrs::parse("127.0.0.2-127.0.0.4", 10, true).unwrap();
        assert_eq!(
            addrs.0,
            vec![v4("127.0.0.2"), v4("127.0.0.3"), v4("127.0.0.4")]
        );
        let addrs = SourceAddrs::parse("127.0.0.5, 127.0.1.1-127.0.1.2", 10, true).unwrap();
        assert_eq!(
            addrs.0,
            vec![v4("127.0.0.5"), v4("127.0.1.1"), v4("127.0.1.2")]
        );
        assert!(SourceAddrs::parse("127.0.0.9-127.0.0.2", 10, true).is_err());
        assert!(SourceAddrs::parse("banana", 10, true).is_err());
        assert!(SourceAddrs::parse("none", 10, true).unwrap().0.is_empty());
    }

    #[test]
    fn auto_uses_loopback_addresses_only_for_loopback_servers() {
        assert_eq!(
            SourceAddrs::parse("auto", 10, true).unwrap().0,
            vec![v4("127.0.0.2")]
        );
        assert_eq!(SourceAddrs::parse("auto", 25_000, true).unwrap().0.len(), 3);
        assert!(
            SourceAddrs::parse("auto", 25_000, false)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[test]
    fn round_robin() {
        let addrs = SourceAddrs::parse("127.0.0.2-127.0.0.3", 10, true).unwrap();
        assert_eq!(addrs.for_index(0), Some(v4("127.0.0.2")));
        assert_eq!(addrs.for_index(3), Some(v4("127.0.0.3")));
        assert_eq!(SourceAddrs(vec![]).for_index(3), None);
    }

    #[test]
    fn capacity_checks() {
        assert!(check(10_000, 20_000, 1, 28_232).is_ok());
        let e = check(19_990, 20_000, 4, 28_232).unwrap_err().to_string();
        assert!(e.contains("file descriptors"), "{e}");
        let e = check(30_000, 1_000_000, 1, 28_232).unwrap_err().to_string();
        assert!(e.contains("--source-ips"), "{e}");
        assert!(check(30_000, 1_000_000, 2, 28_232).is_ok());
    }

    #[test]
    fn port_range() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28_232));
        assert_eq!(parse_port_range("nonsense"), None);
    }
}

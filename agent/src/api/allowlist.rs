//! `restapi.allowlist` and `allowlist_include_members`: which source addresses may
//! call the unsafe methods.
//!
//! Entries are addresses, CIDR networks or host names (resolved when the list is
//! built: at start and on reload). Members' addresses come from the hosts of
//! their `api_url` and `conn_url` in the last cluster snapshot.
//!
//! Rule: fail closed. An allowlist that is configured but resolves to nothing
//! admits nobody (Patroni would then admit everybody).

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use crate::dcs::model::Cluster;

/// An IP network (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `address/prefix` (the host bits are ignored, as Python's `ip_network(v, False)`).
    pub fn parse(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected address/prefix"))?;
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("`{s}`: `{a}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?;
        Ok(Net { addr, prefix })
    }

    /// One address.
    pub fn host(addr: IpAddr) -> Net {
        let addr = addr.to_canonical();
        Net {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |n: u32, len: u32, x: u128| -> u128 {
            if n == 0 {
                0
            } else {
                x >> (len - n)
            }
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let p = u32::from(self.prefix);
                bits(p, 32, u32::from(net).into()) == bits(p, 32, u32::from(ip).into())
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let p = u32::from(self.prefix);
                bits(p, 128, u128::from(net)) == bits(p, 128, u128::from(ip))
            }
            _ => false,
        }
    }
}

/// The configured allowlist as networks, plus a warning per entry that could not
/// be used (a host name that does not resolve). Networks were checked at load.
pub fn build(entries: &[String]) -> (Vec<Net>, Vec<String>) {
    let mut nets = Vec::new();
    let mut warnings = Vec::new();
    for e in entries {
        let e = e.trim();
        if e.contains('/') {
            match Net::parse(e) {
                Ok(n) => nets.push(n),
                Err(m) => warnings.push(format!("restapi.allowlist: {m}, ignored")),
            }
            continue;
        }
        let host = e.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            nets.push(Net::host(ip));
            continue;
        }
        match (host, 0u16).to_socket_addrs() {
            Ok(addrs) => {
                let before = nets.len();
                nets.extend(addrs.map(|a| Net::host(a.ip())));
                if nets.len() == before {
                    warnings.push(format!("restapi.allowlist: `{e}` resolves to no address"));
                }
            }
            Err(err) => warnings.push(format!("restapi.allowlist: cannot resolve `{e}`: {err}")),
        }
    }
    (nets, warnings)
}

/// The host part of a member's `api_url` (`http://h:8008/patroni`) or
/// `conn_url` (`postgres://h:5432/postgres`).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// The addresses of the cluster's members (their `api_url` and `conn_url`
/// hosts); host names are resolved, each within a short timeout.
pub async fn member_addresses(cluster: &Cluster) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for m in &cluster.members {
        for url in [m.data.api_url.as_deref(), m.data.conn_url.as_deref()]
            .into_iter()
            .flatten()
        {
            let Some(host) = url_host(url) else { continue };
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.push(ip.to_canonical());
                continue;
            }
            let lookup = tokio::net::lookup_host((host.to_string(), 0u16));
            if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(1), lookup).await {
                out.extend(addrs.map(|a| a.ip().to_canonical()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = Net::parse("10.1.2.3/8").unwrap();
        assert!(n.contains(ip("10.200.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!Net::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        let one = Net::parse("127.0.0.1/32").unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(one.contains(ip("::ffff:127.0.0.1")), "v4-mapped v6 peers");
        assert!(!one.contains(ip("127.0.0.2")));
        assert!(Net::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("x/8").is_err());
        assert!(Net::parse("10.0.0.0/").is_err());
    }

    #[test]
    fn entries_hosts_and_names() {
        let (nets, warnings) = build(&[
            "127.0.0.1".into(),
            "192.168.0.0/16".into(),
            "localhost".into(),
            "no-such-host.invalid".into(),
        ]);
        assert!(nets.iter().any(|n| n.contains(ip("192.168.3.4"))));
        assert!(nets.iter().any(|n| n.contains(ip("127.0.0.1"))));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no-such-host.invalid"));
    }

    #[test]
    fn hosts_of_member_urls() {
        assert_eq!(url_host("http://10.0.0.1:8008/patroni"), Some("10.0.0.1"));
        assert_eq!(url_host("https://db1/patroni"), Some("db1"));
        assert_eq!(url_host("postgres://u:p@[::1]:5432/postgres"), Some("::1"));
        assert_eq!(url_host("nonsense"), None);
    }
}

//! The uwsgi allow list (A1–A3, A5): which peers may send requests.
//!
//! Compiled once per worker from gunicorn's `uwsgi_allow_ips` strings; checked on each accepted
//! TCP connection before a byte is read.

use std::net::IpAddr;
use std::str::FromStr;

use ipnetwork::IpNetwork;

/// gunicorn's default for `uwsgi_allow_ips` (A1).
pub const DEFAULT_ALLOW: &[&str] = &["127.0.0.1", "::1"];

/// A compiled allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    any: bool,
    networks: Vec<IpNetwork>,
}

/// An entry that is neither an address, a network nor `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    pub entry: String,
    pub reason: String,
}

impl std::fmt::Display for InvalidEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid allow-list entry {:?}: {}",
            self.entry, self.reason
        )
    }
}

impl std::error::Error for InvalidEntry {}

fn parse_entry(entry: &str) -> Result<IpNetwork, InvalidEntry> {
    let invalid = |reason: String| InvalidEntry {
        entry: entry.to_owned(),
        reason,
    };
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Ok(IpNetwork::from(ip));
    }
    let Some((addr, _)) = entry.split_once('/') else {
        return Err(invalid("not an IP address, a CIDR network or *".into()));
    };
    let net = IpNetwork::from_str(entry).map_err(|e| invalid(e.to_string()))?;
    let ip = IpAddr::from_str(addr).map_err(|e| invalid(e.to_string()))?;
    if net.network() != ip {
        return Err(invalid(format!(
            "host bits are set (did you mean {}/{}?)",
            net.network(),
            net.prefix()
        )));
    }
    Ok(net)
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else the address itself (A2).
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl AllowList {
    /// Compiles entries: addresses, strict CIDR networks (no host bits), or `*` (A1).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidEntry> {
        let mut list = Self {
            any: false,
            networks: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                list.any = true;
            } else {
                list.networks.push(parse_entry(entry)?);
            }
        }
        Ok(list)
    }

    /// Whether the list accepts anyone (`*`).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether a TCP peer may send requests. IPv4-mapped IPv6 peers match as IPv4 (A2).
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = unmap(ip);
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// [`allows`](Self::allows) on a textual address; an unparsable one is refused.
    pub fn allows_str(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        // Zone ids (`fe80::1%eth0`) are not part of the address.
        let host = host.split('%').next().unwrap_or(host);
        IpAddr::from_str(host).is_ok_and(|ip| self.allows(ip))
    }
}

impl Default for AllowList {
    fn default() -> Self {
        // The defaults are valid literals.
        Self::new(DEFAULT_ALLOW).unwrap_or(Self {
            any: false,
            networks: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_default_is_loopback() {
        let list = AllowList::default();
        assert!(list.allows_str("127.0.0.1"));
        assert!(list.allows_str("::1"));
        assert!(!list.allows_str("127.0.0.2"));
        assert!(!list.allows_str("10.0.0.1"));
    }

    #[test]
    fn a1_cidr_and_star() {
        let list = AllowList::new(&["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        assert!(list.allows_str("10.1.2.3"));
        assert!(!list.allows_str("11.0.0.1"));
        assert!(list.allows_str("2001:db8::5"));
        assert!(!list.allows_str("2001:db9::5"));
        assert!(AllowList::new(&["*"]).unwrap().allows_str("203.0.113.9"));
        assert!(AllowList::new(&["*"]).unwrap().allows_any());
        assert!(!list.allows_str("not an address"));
    }

    #[test]
    fn a1_strict_cidr() {
        let err = AllowList::new(&["192.168.1.1/24"]).unwrap_err();
        assert!(err.to_string().contains("host bits"), "{err}");
        assert!(err.to_string().contains("192.168.1.0/24"));
        assert!(AllowList::new(&["10.0.0.0/33"]).is_err());
        assert!(AllowList::new(&["localhost"]).is_err());
        assert!(AllowList::new(&["10.0.0.0/8", " ::1 "]).is_ok());
    }

    #[test]
    fn a2_ipv4_mapped_peers() {
        let list = AllowList::new(&["10.0.0.0/24"]).unwrap();
        assert!(list.allows_str("::ffff:10.0.0.5"));
        assert!(!list.allows_str("::ffff:10.0.1.5"));
        assert!(AllowList::default().allows_str("::ffff:127.0.0.1"));
    }
}

//! Networks: the prefixes a source address is judged by.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::fingerprint;

/// A network prefix, for fingerprints and for reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The prefix of `ip` of `len` bits (the host bits cleared).
    pub fn of(ip: IpAddr, len: u8) -> Prefix {
        let addr = match ip {
            IpAddr::V4(v4) => {
                let len = len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let len = len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Prefix { addr, len }
    }

    /// A stable fingerprint of the prefix.
    pub fn fingerprint(&self) -> u32 {
        match self.addr {
            IpAddr::V4(v4) => fingerprint(self.len, &v4.octets()),
            IpAddr::V6(v6) => fingerprint(128 + self.len / 2, &v6.octets()),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The network an address is in (IPv4 /24, IPv6 /48) and the wider block around it (IPv4 /16, IPv6 /32),
/// which stands in for the provider when no ASN database is configured.
pub fn networks(ip: IpAddr) -> (Prefix, Prefix) {
    let ip = canonical(ip);
    match ip {
        IpAddr::V4(_) => (Prefix::of(ip, 24), Prefix::of(ip, 16)),
        IpAddr::V6(_) => (Prefix::of(ip, 48), Prefix::of(ip, 32)),
    }
}

/// The unit a source is counted by for abuse signals: one IPv4 address, one IPv6 /64.
pub fn source(ip: IpAddr) -> Prefix {
    let ip = canonical(ip);
    match ip {
        IpAddr::V4(_) => Prefix::of(ip, 32),
        IpAddr::V6(_) => Prefix::of(ip, 64),
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_clear_host_bits() {
        let (fine, coarse) = networks("203.0.113.77".parse().unwrap());
        assert_eq!(fine.to_string(), "203.0.113.0/24");
        assert_eq!(coarse.to_string(), "203.0.0.0/16");
        let (fine, coarse) = networks("2001:db8:1234:5678::1".parse().unwrap());
        assert_eq!(fine.to_string(), "2001:db8:1234::/48");
        assert_eq!(coarse.to_string(), "2001:db8::/32");
        assert_eq!(source("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(networks(mapped), networks("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn same_network_same_fingerprint() {
        let a = networks("198.51.100.1".parse().unwrap()).0.fingerprint();
        let b = networks("198.51.100.200".parse().unwrap()).0.fingerprint();
        let c = networks("198.51.101.1".parse().unwrap()).0.fingerprint();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

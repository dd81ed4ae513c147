//! Who sent a request that came through proxies: the load balancers and reverse proxies an operator trusts
//! (`trusted_proxies`, in the server's and the gateway's configuration), and the client's address read from
//! `X-Forwarded-For` behind them.

use std::net::IpAddr;

use hyper::HeaderMap;
pub use ipnet::IpNet;

/// A comma-separated list of addresses (`192.0.2.7`, a network of one) and CIDR ranges (`10.0.0.0/8`); the
/// first entry that is neither is the error.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| entry.to_owned())
        })
        .collect()
}

/// The client's address: the connection's, or, when that is a trusted proxy, the last `X-Forwarded-For` entry
/// that is not a trusted proxy. Entries are read from the right, since each proxy appends the address it was
/// reached from and everything to the left of the first untrusted one is the client's to write. An entry that is
/// not an address ends the walk at the trusted proxy that passed it on.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    walk(headers, trusted, Some(peer)).unwrap_or(peer)
}

/// The client named by the proxy in front of a forward-auth endpoint, which sees no connection of the client's:
/// the last `X-Forwarded-For` entry, or, when that is a trusted proxy, the last one before it that is not.
/// `None` when there is no entry, or the one the walk stops at is not an address.
pub fn forwarded_address(headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    walk(headers, trusted, None)
}

/// Reads `X-Forwarded-For` from the right until an entry that is not a trusted proxy; `from` is the answer when
/// the first entry read is not an address (or there is none).
fn walk(headers: &HeaderMap, trusted: &[IpNet], from: Option<IpAddr>) -> Option<IpAddr> {
    let mut client = from;
    for line in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(line) = line.to_str() else { return client };
        for entry in line.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else { return client };
            client = Some(ip);
            if !trusted.iter().any(|net| net.contains(&ip)) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn trusted_proxies_are_addresses_and_ranges() {
        let nets = parse_networks(" 10.0.0.0/8,192.0.2.7 , 2001:db8::/32, 10.1.2.3/8").unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "10.0.0.0/8"]);
        assert_eq!(parse_networks("").unwrap(), []);
        assert_eq!(parse_networks("10.0.0.0/8, proxy.internal").unwrap_err(), "proxy.internal");
        assert_eq!(parse_networks("10.0.0.0/33").unwrap_err(), "10.0.0.0/33");
    }

    #[test]
    fn behind_forward_auth_the_client_is_the_last_entry_past_trusted_proxies() {
        let trusted = parse_networks("10.0.0.0/8").unwrap();
        let client = |line: &str, trusted: &[IpNet]| {
            let mut headers = HeaderMap::new();
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
            forwarded_address(&headers, trusted).map(|ip| ip.to_string())
        };
        assert_eq!(client("6.6.6.6, 203.0.113.9, 10.0.0.2", &trusted).as_deref(), Some("203.0.113.9"));
        assert_eq!(client("6.6.6.6, 203.0.113.9, 10.0.0.2", &[]).as_deref(), Some("10.0.0.2"));
        assert_eq!(client("203.0.113.9, unknown", &trusted), None);
        assert_eq!(forwarded_address(&HeaderMap::new(), &trusted), None);
    }

    #[test]
    fn the_client_is_the_last_forwarded_address_that_is_not_a_trusted_proxy() {
        let trusted = parse_networks("10.0.0.0/8, 192.0.2.7").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let client = |peer: &str, lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
            }
            client_address(ip(peer), &headers, &trusted).to_string()
        };
        // A peer that is not a proxy is the client, whatever it writes.
        assert_eq!(client("198.51.100.7", &["203.0.113.9"]), "198.51.100.7");
        // Through one proxy, two, and two header lines; what the client wrote first is not read.
        assert_eq!(client("10.0.0.1", &["203.0.113.9"]), "203.0.113.9");
        assert_eq!(client("10.0.0.1", &["6.6.6.6, 203.0.113.9, 192.0.2.7"]), "203.0.113.9");
        assert_eq!(client("10.0.0.1", &["6.6.6.6, 203.0.113.9", "10.1.2.3"]), "203.0.113.9");
        // Only proxies: the farthest one. No header: the proxy itself.
        assert_eq!(client("10.0.0.1", &["10.9.9.9, 192.0.2.7"]), "10.9.9.9");
        assert_eq!(client("10.0.0.1", &[]), "10.0.0.1");
        // An entry that is not an address stops the walk at the proxy that passed it on.
        assert_eq!(client("10.0.0.1", &["203.0.113.9, unknown"]), "10.0.0.1");
        assert_eq!(client("10.0.0.1", &["unknown, 192.0.2.7"]), "192.0.2.7");
        assert_eq!(client("10.0.0.1", &["6.6.6.6", "\u{e9}", "192.0.2.7"]), "192.0.2.7");
    }
}

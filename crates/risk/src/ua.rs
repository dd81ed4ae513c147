//! User-agent families: browser (or tool) and operating system, versions ignored, so an update is not news.

use std::fmt;

use crate::event::fingerprint;

/// What a `User-Agent` says about the software, without versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family {
    pub agent: Agent,
    pub os: Os,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Agent {
    Edge,
    Opera,
    Firefox,
    Chrome,
    Safari,
    Curl,
    Wget,
    Python,
    Go,
    Java,
    Node,
    OkHttp,
    /// Anything else: an app's own product token, told apart by its fingerprint.
    Other(u32),
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Os {
    Windows,
    MacOs,
    Ios,
    Android,
    ChromeOs,
    Linux,
    Unknown,
}

impl Family {
    /// Reads the family from a `User-Agent` value. Cheap: a handful of substring searches.
    pub fn parse(ua: &str) -> Family {
        Family { agent: agent(ua), os: os(ua) }
    }

    /// A stable fingerprint of the family.
    pub fn fingerprint(&self) -> u32 {
        let agent = match self.agent {
            Agent::Other(fp) => fp.to_le_bytes(),
            known => [agent_code(known), 0, 0, 0],
        };
        fingerprint(b'u', &[agent[0], agent[1], agent[2], agent[3], self.os as u8])
    }
}

fn agent_code(agent: Agent) -> u8 {
    match agent {
        Agent::Edge => 1,
        Agent::Opera => 2,
        Agent::Firefox => 3,
        Agent::Chrome => 4,
        Agent::Safari => 5,
        Agent::Curl => 6,
        Agent::Wget => 7,
        Agent::Python => 8,
        Agent::Go => 9,
        Agent::Java => 10,
        Agent::Node => 11,
        Agent::OkHttp => 12,
        Agent::Other(_) => 13,
        Agent::None => 0,
    }
}

fn agent(ua: &str) -> Agent {
    const MARKERS: [(&str, Agent); 14] = [
        ("Edg/", Agent::Edge),
        ("OPR/", Agent::Opera),
        ("Firefox/", Agent::Firefox),
        ("Chrome/", Agent::Chrome),
        ("CriOS/", Agent::Chrome),
        ("Safari/", Agent::Safari),
        ("curl/", Agent::Curl),
        ("Wget/", Agent::Wget),
        ("python", Agent::Python),
        ("Python", Agent::Python),
        ("Go-http-client", Agent::Go),
        ("Java/", Agent::Java),
        ("node", Agent::Node),
        ("okhttp/", Agent::OkHttp),
    ];
    if ua.trim().is_empty() {
        return Agent::None;
    }
    for (marker, agent) in MARKERS {
        if ua.contains(marker) {
            return agent;
        }
    }
    let product = ua.split(['/', ' ', '(']).next().unwrap_or(ua);
    let product = &product[..product.len().min(64)];
    Agent::Other(fingerprint(b'p', product.as_bytes()))
}

fn os(ua: &str) -> Os {
    if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iOS") {
        Os::Ios
    } else if ua.contains("Android") {
        Os::Android
    } else if ua.contains("Windows") {
        Os::Windows
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Os::MacOs
    } else if ua.contains("CrOS") {
        Os::ChromeOs
    } else if ua.contains("Linux") {
        Os::Linux
    } else {
        Os::Unknown
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agent = match self.agent {
            Agent::Edge => "Edge",
            Agent::Opera => "Opera",
            Agent::Firefox => "Firefox",
            Agent::Chrome => "Chrome",
            Agent::Safari => "Safari",
            Agent::Curl => "curl",
            Agent::Wget => "Wget",
            Agent::Python => "a Python HTTP library",
            Agent::Go => "Go's HTTP client",
            Agent::Java => "Java's HTTP client",
            Agent::Node => "a Node.js HTTP library",
            Agent::OkHttp => "OkHttp",
            Agent::Other(_) => "an app",
            Agent::None => "no user agent",
        };
        let os = match self.os {
            Os::Windows => " on Windows",
            Os::MacOs => " on macOS",
            Os::Ios => " on iOS",
            Os::Android => " on Android",
            Os::ChromeOs => " on ChromeOS",
            Os::Linux => " on Linux",
            Os::Unknown => "",
        };
        write!(f, "{agent}{os}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_ignore_versions() {
        let a = Family::parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36");
        let b = Family::parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "Chrome on Windows");
        let edge =
            Family::parse("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Edg/131.0");
        assert_eq!(edge.agent, Agent::Edge);
        let safari = Family::parse("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Version/17.4 Mobile/15E148 Safari/604.1");
        assert_eq!(safari.to_string(), "Safari on iOS");
        assert_eq!(Family::parse("curl/8.5.0").agent, Agent::Curl);
        assert_eq!(Family::parse("python-requests/2.31").agent, Agent::Python);
        assert_eq!(Family::parse("").agent, Agent::None);
    }

    #[test]
    fn apps_are_told_apart_by_product() {
        let a = Family::parse("ShopApp/3.2 (iPhone; iOS 17.4)");
        let b = Family::parse("ShopApp/3.3 (iPhone; iOS 17.5)");
        let c = Family::parse("BankApp/1.0 (iPhone; iOS 17.4)");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}

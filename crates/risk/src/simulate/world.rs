//! The simulated Internet: providers with address blocks, and the user agents people and tools send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Where providers are: UTC offset (hours), country, and a city (latitude, longitude).
pub const REGIONS: [(f64, &str, f64, f64); 9] = [
    (-8.0, "US", 37.77, -122.42),
    (-5.0, "US", 40.71, -74.01),
    (0.0, "GB", 51.51, -0.13),
    (1.0, "DE", 52.52, 13.40),
    (1.0, "FR", 48.86, 2.35),
    (5.5, "IN", 19.08, 72.88),
    (8.0, "SG", 1.35, 103.82),
    (9.0, "JP", 35.68, 139.69),
    (-3.0, "BR", -23.55, -46.63),
];

/// An access provider: IPv4 /16 blocks and, for some, an IPv6 /32, in one region, with its own ASN.
#[derive(Debug, Clone)]
pub struct Provider {
    pub blocks: Vec<[u8; 2]>,
    pub v6: Option<u16>,
    pub region: usize,
    pub asn: u32,
}

impl Provider {
    fn new(rng: &mut ChaCha8Rng, blocks: usize, v6_share: f64, region: usize, asn: u32) -> Provider {
        let blocks = (0..blocks).map(|_| block(rng)).collect();
        let v6 = rng.random_bool(v6_share).then(|| rng.random_range(0x0400..0xfff0));
        Provider { blocks, v6, region: region % REGIONS.len(), asn }
    }

    /// A network (/24) of this provider.
    pub fn network(&self, rng: &mut ChaCha8Rng) -> [u8; 3] {
        let b = self.blocks[rng.random_range(0..self.blocks.len())];
        [b[0], b[1], rng.random_range(0..=255)]
    }

    /// A fresh address anywhere in the provider (carrier-grade NAT, a proxy exit, a café).
    pub fn address(&self, rng: &mut ChaCha8Rng) -> IpAddr {
        match self.v6 {
            Some(v6) if rng.random_bool(0.5) => v6_address(v6, rng.random(), rng),
            _ => host(self.network(rng), rng),
        }
    }
}

/// A random host in a /24.
pub fn host(net: [u8; 3], rng: &mut ChaCha8Rng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], rng.random_range(1..=254)))
}

/// A random host in a site (/48) of a provider's IPv6 /32.
pub fn v6_address(v6: u16, site: u16, rng: &mut ChaCha8Rng) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2a00, v6, site, rng.random(), rng.random(), rng.random(), rng.random(), rng.random()))
}

/// A public-looking /16 (no private, loopback, link-local or documentation space).
fn block(rng: &mut ChaCha8Rng) -> [u8; 2] {
    loop {
        let a: u8 = rng.random_range(11..=223);
        if ![100, 127, 169, 172, 192, 198, 203].contains(&a) {
            return [a, rng.random()];
        }
    }
}

/// Every kind of network the simulation draws from.
#[derive(Debug, Clone)]
pub struct World {
    pub isps: Vec<Provider>,
    pub carriers: Vec<Provider>,
    pub business: Vec<Provider>,
    /// Workplace networks (/24) and their regions.
    pub companies: Vec<([u8; 3], usize)>,
    pub vpns: Vec<Provider>,
    pub hostings: Vec<Provider>,
}

impl World {
    pub fn new(rng: &mut ChaCha8Rng) -> World {
        let regions = REGIONS.len();
        let isps = (0..5 * regions)
            .map(|i| {
                let blocks = rng.random_range(2..=6);
                Provider::new(rng, blocks, 0.3, i, 10_000 + i as u32)
            })
            .collect();
        let carriers = (0..2 * regions).map(|i| Provider::new(rng, 6, 0.5, i, 20_000 + i as u32)).collect();
        let business: Vec<Provider> = (0..regions).map(|i| Provider::new(rng, 2, 0.0, i, 30_000 + i as u32)).collect();
        let companies = (0..300)
            .map(|i| {
                let provider = &business[i % regions];
                (provider.network(rng), provider.region)
            })
            .collect();
        let vpns = (0..4).map(|i| Provider::new(rng, 2, 0.0, [1, 3, 6, 2][i], 40_000 + i as u32)).collect();
        let hostings = (0..8).map(|i| Provider::new(rng, 4, 0.3, i * 2 + 1, 50_000 + i as u32)).collect();
        World { isps, carriers, business, companies, vpns, hostings }
    }

    /// Providers of a kind in `region`.
    pub fn in_region(providers: &[Provider], region: usize) -> Vec<usize> {
        (0..providers.len()).filter(|&i| providers[i].region == region).collect()
    }

    /// The GeoIP database of this world: every provider's blocks, with its ASN, country and city.
    pub fn geoip(&self) -> Vec<super::mmdb::Entry> {
        let all = self.isps.iter().chain(&self.carriers).chain(&self.business).chain(&self.vpns).chain(&self.hostings);
        let mut entries = Vec::new();
        for provider in all {
            let (_, country, lat, lon) = REGIONS[provider.region];
            // Spread a region's providers over its metropolitan area (about 30 km).
            let jitter = f64::from(provider.asn % 7) * 0.04;
            for block in &provider.blocks {
                entries.push(super::mmdb::Entry {
                    prefix: *block,
                    asn: provider.asn,
                    country,
                    location: (lat + jitter, lon - jitter),
                });
            }
        }
        entries
    }

    /// An exit of a VPN provider: one of a few dozen /24s.
    pub fn vpn_exit(&self, provider: usize, rng: &mut ChaCha8Rng) -> IpAddr {
        let p = &self.vpns[provider % self.vpns.len()];
        let b = p.blocks[rng.random_range(0..p.blocks.len())];
        host([b[0], b[1], rng.random_range(0..16)], rng)
    }

    /// Where an attacker comes from: a residential proxy (anywhere), a hosting provider or a VPN.
    pub fn attacker_address(&self, rng: &mut ChaCha8Rng, residential: f64) -> IpAddr {
        let roll: f64 = rng.random();
        if roll < residential {
            self.isps[rng.random_range(0..self.isps.len())].address(rng)
        } else if roll < residential + (1.0 - residential) * 0.6 {
            self.hostings[rng.random_range(0..self.hostings.len())].address(rng)
        } else {
            self.vpn_exit(rng.random_range(0..self.vpns.len()), rng)
        }
    }
}

/// Desktop browsers, by version.
pub fn browser(kind: usize, version: u32) -> String {
    let v = version;
    match kind % 8 {
        0 => format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
        1 => format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0"),
        2 => format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"),
        3 => format!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
        4 => format!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.{} Safari/605.1.15", v % 7),
        5 => format!("Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"),
        6 => format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
        _ => format!("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
    }
}

/// The first-party phone app, by platform and version.
pub fn app(ios: bool, version: u32) -> String {
    if ios {
        format!("ShopApp/4.{version} (iPhone; iOS 18.{}; Scale/3.00)", version % 5)
    } else {
        format!("ShopApp/4.{version} (Linux; Android 15; Pixel 9) okhttp/4.12.0")
    }
}

/// What scripts send.
pub fn tool(rng: &mut ChaCha8Rng) -> String {
    let tools = ["python-requests/2.32.3", "curl/8.11.0", "Go-http-client/1.1", "python-httpx/0.28.1", "Java/21.0.5"];
    tools[rng.random_range(0..tools.len())].to_owned()
}

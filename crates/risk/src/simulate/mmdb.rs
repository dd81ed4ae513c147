//! A small MaxMind DB (format 2.0) writer, for the simulated world's networks: IPv4 blocks to an autonomous
//! system, a country and a location. Enough for `risk simulate --geoip-out` and for tests; not a general tool.

/// One block and what it maps to.
#[derive(Debug, Clone)]
pub struct Entry {
    pub prefix: [u8; 2],
    pub asn: u32,
    pub country: &'static str,
    pub location: (f64, f64),
}

#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Node(usize),
    Data(usize),
}

/// The database bytes for `entries` (IPv4 /16 blocks; later entries win over earlier ones for the same block).
pub fn write(entries: &[Entry], build_epoch: u64) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty, Slot::Empty]];
    for entry in entries {
        let offset = data.len();
        encode_record(&mut data, entry);
        let bits = u16::from_be_bytes(entry.prefix);
        let mut node = 0;
        for depth in 0..16 {
            let bit = usize::from((bits >> (15 - depth)) & 1 == 1);
            if depth == 15 {
                nodes[node][bit] = Slot::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Slot::Node(next) => next,
                _ => {
                    nodes.push([Slot::Empty, Slot::Empty]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Slot::Node(next);
                    next
                }
            };
        }
    }
    let count = nodes.len();
    let mut out = Vec::with_capacity(count * 6 + 16 + data.len() + 300);
    for node in &nodes {
        for slot in node {
            let value = match *slot {
                Slot::Empty => count,
                Slot::Node(n) => n,
                Slot::Data(offset) => count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let mut meta = Vec::new();
    map_header(&mut meta, 9);
    for (key, value) in [("binary_format_major_version", 2u64), ("binary_format_minor_version", 0)] {
        string(&mut meta, key);
        unsigned(&mut meta, 5, value);
    }
    string(&mut meta, "build_epoch");
    extended(&mut meta, 9, &minimal(build_epoch));
    string(&mut meta, "database_type");
    string(&mut meta, "Portcullis-Simulated-City-ASN");
    string(&mut meta, "description");
    map_header(&mut meta, 1);
    string(&mut meta, "en");
    string(&mut meta, "the networks of a simulated risk corpus");
    string(&mut meta, "ip_version");
    unsigned(&mut meta, 5, 4);
    string(&mut meta, "languages");
    extended(&mut meta, 11, &[]); // an empty array (size 0)
    string(&mut meta, "node_count");
    unsigned(&mut meta, 6, count as u64);
    string(&mut meta, "record_size");
    unsigned(&mut meta, 5, 24);
    out.extend_from_slice(&meta);
    out
}

fn encode_record(out: &mut Vec<u8>, entry: &Entry) {
    map_header(out, 3);
    string(out, "autonomous_system_number");
    unsigned(out, 6, u64::from(entry.asn));
    string(out, "country");
    map_header(out, 1);
    string(out, "iso_code");
    string(out, entry.country);
    string(out, "location");
    map_header(out, 2);
    string(out, "latitude");
    double(out, entry.location.0);
    string(out, "longitude");
    double(out, entry.location.1);
}

/// A control byte for `kind` (1..=7) and a size below 29.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    out.push((kind << 5) | (size as u8 & 0x1f));
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    control(out, 7, pairs);
}

fn string(out: &mut Vec<u8>, s: &str) {
    if s.len() < 29 {
        control(out, 2, s.len());
    } else {
        control(out, 2, 29);
        out.push((s.len() - 29) as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

fn minimal(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

fn unsigned(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = minimal(value);
    control(out, kind, bytes.len());
    out.extend_from_slice(&bytes);
}

/// An extended type (`kind` >= 8): type 0 in the control byte, `kind - 7` in the next.
fn extended(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    control(out, 0, payload.len());
    out.push(kind - 7);
    out.extend_from_slice(payload);
}

fn double(out: &mut Vec<u8>, value: f64) {
    control(out, 3, 8);
    out.extend_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::GeoIp;

    #[test]
    fn the_reader_finds_what_was_written() {
        let entries = [
            Entry { prefix: [81, 2], asn: 3320, country: "DE", location: (52.52, 13.40) },
            Entry { prefix: [81, 3], asn: 64_512, country: "FR", location: (48.86, 2.35) },
        ];
        let mut geo = GeoIp::default();
        geo.add(write(&entries, 1_764_547_200)).unwrap();
        let berlin = geo.lookup("81.2.77.9".parse().unwrap());
        assert_eq!(berlin.asn, Some(3320));
        assert_eq!(berlin.country, Some(*b"DE"));
        let (lat, lon) = berlin.location.unwrap();
        assert!((lat - 52.52).abs() < 1e-4 && (lon - 13.40).abs() < 1e-4);
        assert_eq!(geo.lookup("81.3.0.1".parse().unwrap()).country, Some(*b"FR"));
        assert_eq!(geo.lookup("81.4.0.1".parse().unwrap()).asn, None);
        assert_eq!(geo.lookup("2001:db8::1".parse().unwrap()).asn, None);
    }
}

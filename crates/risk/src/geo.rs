//! Where an address is: its autonomous system, country and approximate location, from local databases in the
//! MaxMind DB format (GeoLite2/GeoIP2 ASN, Country or City, or any database with the same fields). Optional:
//! without one, the engine judges by network prefixes alone.

use std::net::IpAddr;

use serde::Deserialize;

/// What the databases know about an address.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Place {
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<[u8; 2]>,
    /// Latitude and longitude in degrees.
    pub location: Option<(f32, f32)>,
}

/// One or more MaxMind DB files, asked in order; each field comes from the first that has it.
#[derive(Debug, Default)]
pub struct GeoIp {
    readers: Vec<maxminddb::Reader<Vec<u8>>>,
}

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("not a usable MaxMind DB file: {0}")]
pub struct GeoIpError(String);

#[derive(Deserialize)]
struct Record {
    autonomous_system_number: Option<u32>,
    country: Option<Country>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Country {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl GeoIp {
    /// Adds a database from its bytes (the caller reads the file: this crate does no I/O).
    pub fn add(&mut self, bytes: Vec<u8>) -> Result<(), GeoIpError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| GeoIpError(e.to_string()))?;
        self.readers.push(reader);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// What the databases say about `ip` (all `None` when none knows it).
    pub fn lookup(&self, ip: IpAddr) -> Place {
        let mut place = Place::default();
        for reader in &self.readers {
            let Ok(Some(record)) = reader.lookup(ip).and_then(|r| r.decode::<Record>()) else { continue };
            place.asn = place.asn.or(record.autonomous_system_number);
            if place.country.is_none() {
                place.country =
                    record.country.and_then(|c| c.iso_code).and_then(|code| <[u8; 2]>::try_from(code.as_bytes()).ok());
            }
            if place.location.is_none() {
                place.location = record.location.and_then(|l| match (l.latitude, l.longitude) {
                    (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => Some((lat as f32, lon as f32)),
                    _ => None,
                });
            }
        }
        place
    }
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: (f32, f32), b: (f32, f32)) -> f32 {
    let (lat1, lon1) = (f64::from(a.0).to_radians(), f64::from(a.1).to_radians());
    let (lat2, lon2) = (f64::from(b.0).to_radians(), f64::from(b.1).to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    (2.0 * 6371.0 * h.sqrt().min(1.0).asin()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circles() {
        let paris = (48.86, 2.35);
        let new_york = (40.71, -74.01);
        let d = distance_km(paris, new_york);
        assert!((5800.0..5880.0).contains(&d), "{d}");
        assert_eq!(distance_km(paris, paris), 0.0);
    }

    #[test]
    fn garbage_is_not_a_database() {
        assert!(GeoIp::default().add(b"not a database".to_vec()).is_err());
        assert!(GeoIp::default().lookup("192.0.2.1".parse().unwrap()) == Place::default());
    }
}

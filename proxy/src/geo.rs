//! Where a client is: lookups in a MaxMind-format database (GeoLite2/GeoIP2 City or
//! Country, DB-IP, IPinfo and other `.mmdb` files) that the operator configures under
//! `[geo] database`.
//!
//! The file is read into memory once at start. Records are decoded into the fields guests
//! get (WIT `outpost:edge/geo`), taken from the GeoIP2 City schema, which the Country
//! schema is a subset of; a database with ASN fields in the same record fills those too.
//! Fields the database lacks are simply absent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// A loaded geolocation database.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

/// Why a geolocation database could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error(
    "geo.database: cannot load `{path}`: {reason}\n  fix: point it at a MaxMind-format \
     .mmdb file (e.g. GeoLite2-City.mmdb), relative to the config"
)]
pub struct GeoError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// What the database says about one address: the WIT record guests receive.
pub use crate::wit::outpost::edge::geo::Location;

impl GeoDb {
    /// Loads the database at `path` into memory.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| GeoError {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(GeoDb { reader })
    }

    /// The record for `ip`, or `None` when the database does not cover it.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        let record: Record = match self.reader.lookup(ip).and_then(|r| r.decode()) {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!("geo lookup of {ip} failed: {e}");
                return None;
            }
        };
        let country = record.country.or(record.registered_country);
        let location = record.location.unwrap_or_default();
        Some(Location {
            country_code: country.as_ref().and_then(|c| c.iso_code.clone()),
            country_name: country.and_then(|c| english(c.names)),
            continent_code: record.continent.and_then(|c| c.code),
            region: record
                .subdivisions
                .and_then(|s| s.into_iter().next())
                .and_then(|s| s.iso_code),
            city: record.city.and_then(|c| english(c.names)),
            postal_code: record.postal.and_then(|p| p.code),
            latitude: location.latitude,
            longitude: location.longitude,
            time_zone: location.time_zone,
            asn: record.autonomous_system_number,
            as_org: record.autonomous_system_organization,
        })
    }
}

fn english(names: Option<BTreeMap<String, String>>) -> Option<String> {
    names.and_then(|mut n| n.remove("en"))
}

/// The parts of a GeoIP2 City (or Country, or ASN) record that guests get.
#[derive(Deserialize)]
struct Record {
    country: Option<Place>,
    registered_country: Option<Place>,
    continent: Option<Continent>,
    subdivisions: Option<Vec<Place>>,
    city: Option<Place>,
    postal: Option<Postal>,
    location: Option<Coordinates>,
    #[serde(default, deserialize_with = "any_unsigned")]
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

#[derive(Deserialize)]
struct Place {
    iso_code: Option<String>,
    names: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Continent {
    code: Option<String>,
}

#[derive(Deserialize)]
struct Postal {
    code: Option<String>,
}

#[derive(Deserialize, Default)]
struct Coordinates {
    latitude: Option<f64>,
    longitude: Option<f64>,
    time_zone: Option<String>,
}

/// ASNs are uint32 in MaxMind's files, but other writers use other integer widths; the
/// decoder is strict about types, so this accepts any unsigned integer that fits.
fn any_unsigned<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct Unsigned;
    impl serde::de::Visitor<'_> for Unsigned {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an unsigned integer")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(u32::try_from(v).ok())
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Ok(u32::try_from(v).ok())
        }
    }
    d.deserialize_any(Unsigned)
}

//! Where the client is: country, region, city, coordinates, time zone and network, from
//! the MaxMind-format database the operator gives the node (`[geo] database`).
//!
//! Lookups are local to the node and take microseconds. Without a database, or for an
//! address it does not cover (private ranges, say), there is no location: code for both.

use std::net::IpAddr;

use crate::imports::geo as host;

/// What the geolocation database says about one address; fields it lacks are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code, e.g. `DE`.
    pub country_code: Option<String>,
    /// The country's English name.
    pub country_name: Option<String>,
    /// Continent code, e.g. `EU`.
    pub continent_code: Option<String>,
    /// ISO 3166-2 code of the largest subdivision, e.g. `BE` (Berlin).
    pub region: Option<String>,
    /// The city's English name.
    pub city: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Approximate latitude.
    pub latitude: Option<f64>,
    /// Approximate longitude.
    pub longitude: Option<f64>,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: Option<String>,
    /// Autonomous system number, when the database has one.
    pub asn: Option<u32>,
    /// Autonomous system organization.
    pub as_org: Option<String>,
}

/// The client's location (by its IP address, the node's TCP peer).
///
/// ```no_run
/// let country = outpost::geo::client_location()
///     .and_then(|l| l.country_code)
///     .unwrap_or_else(|| "unknown".into());
/// outpost::info!("client in {country}");
/// ```
pub fn client_location() -> Option<Location> {
    host::lookup(None).map(Location::from)
}

/// The location of any address, for example one a trusted load balancer put in
/// `X-Forwarded-For`.
///
/// ```no_run
/// let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
/// if let Some(location) = outpost::geo::lookup(ip) {
///     outpost::info!("{ip} is in {:?}", location.city);
/// }
/// ```
pub fn lookup(ip: IpAddr) -> Option<Location> {
    host::lookup(Some(&ip.to_string())).map(Location::from)
}

impl From<host::Location> for Location {
    fn from(l: host::Location) -> Self {
        Self {
            country_code: l.country_code,
            country_name: l.country_name,
            continent_code: l.continent_code,
            region: l.region,
            city: l.city,
            postal_code: l.postal_code,
            latitude: l.latitude,
            longitude: l.longitude,
            time_zone: l.time_zone,
            asn: l.asn,
            as_org: l.as_org,
        }
    }
}

//! The host side of the guest contract: what a guest may reach ([`egress`]: outgoing HTTP
//! to named backends through the edge cache) and Outpost's own imports ([`imports`]:
//! cache control, config and secrets, request info, rate counters, geolocation), both on
//! the request's [`EdgeHooks`].

pub mod egress;
pub mod imports;

pub use egress::{
    Backends, DynamicBackends, EdgeHooks, FetchStats, Grants, RequestInfo, ResponsePolicy,
    ServiceStores, TlsInfo,
};

//! Host bindings generated from the SDK's WIT (world `outpost:edge/imports`: Outpost's own
//! imports only; wasi:http comes from wasmtime-wasi-http). A leaf: the WIT records, such as
//! [`outpost::edge::geo::Location`], are the host's one shape of what crosses to guests.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "outpost:edge/imports",
    imports: { default: async },
});

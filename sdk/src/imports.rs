//! Bindings for Outpost's own imports (`sdk/wit`, world `imports`), which the public
//! modules wrap: [`crate::cache`], [`crate::config`], [`crate::request_info`],
//! [`crate::rate`], [`crate::geo`].

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "outpost:edge/imports",
    });
}

pub(crate) use bindings::outpost::edge::{cache, config, geo, rate, request_info};

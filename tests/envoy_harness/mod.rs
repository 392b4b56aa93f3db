//! Runs a real Envoy for end-to-end tests: finds the binary, generates bootstraps whose
//! rate-limit filters ask an in-process quotad, starts Envoy on ephemeral loopback ports, waits
//! until it is ready and stops it on drop. A tiny upstream HTTP server stands behind it, because
//! Envoy never rate limits a `direct_response` route.

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

mod binary;
mod bootstrap;
mod examples;
mod held;
mod process;
mod stack;

pub use binary::{envoy_binary, envoy_or_skip, validate, validate_text};
pub use bootstrap::{Bootstrap, Listener, Route, indent};
pub use examples::{
    envoy_filter_patch, examples_dir, istio_bootstrap, localize, yaml_documents, yaml_files,
};
pub use held::HeldUpstream;
pub use process::{DEADLINE, Envoy};
pub use stack::{
    POLL, Reply, START, Stack, compile, eventually, http_client, send, start_quotad,
    start_quotad_watching, start_upstream, write_atomically,
};

//! The one integration-test binary: the real `senhasegura-forwarder` binary against the
//! loopback simulator (port 0, temp dirs). Every ECS document any test sees is validated
//! against the ECS 9.4 field definitions.

mod broker;
mod cef_parse;
mod ecs;
mod support;

mod check;
mod cli;
mod docs;
mod faults;
mod golden;
mod hostile;
mod kafka;
mod layout;
mod packaging;
mod pipeline;
mod props;
mod rsyslog;
mod service;
mod state_layout;
mod syslog;
mod telemetry;

/// An input listing of tests/golden/.
pub fn golden_input(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

//! The `railyard-cni` meta plugin; see [`railyard_ipam_plugin::meta`].

use std::process::ExitCode;

fn main() -> ExitCode {
    railyard_ipam_plugin::cni::run_main(&mut railyard_ipam_plugin::meta::MetaPlugin)
}

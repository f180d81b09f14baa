//! The `railyard-ipam` CNI IPAM plugin; see [`railyard_ipam_plugin::ipam`].

use std::process::ExitCode;

fn main() -> ExitCode {
    railyard_ipam_plugin::cni::run_main(&mut railyard_ipam_plugin::ipam::IpamPlugin)
}

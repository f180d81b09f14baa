//! The CNI protocol layer under railyard's plugins.
//!
//! `railyard-ipam` (addresses from the route daemon) and the meta plugin
//! (one real interface per NIC) both need the same things: read a runtime's
//! request in any spec version from 0.3.0 to 1.1.0, answer in that version,
//! turn every failure into the spec's error JSON, and call other plugins as a
//! runtime would. That lives here, free of any railyard policy, so it can be
//! tested exhaustively on its own.
//!
//! - [`cni`]: environment, config, versions, results and the [`cni::run`] driver.
//! - [`delegate`]: running another plugin binary found in `CNI_PATH`.
//! - [`error`]: the crate's error type and the CNI codes it maps to.
//!
//! The two plugins on top, each behind a thin binary:
//! - [`ipam`]: `railyard-ipam`, addresses from the route daemon via [`client`].
//! - [`meta`]: `railyard-cni`, one interface per selected NIC.

pub mod client;
pub mod cni;
pub mod delegate;
pub mod error;
pub mod ipam;
pub mod meta;

pub use error::Error;

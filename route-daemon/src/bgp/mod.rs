//! Announcing a routed host's blocks to its leaves over BGP, through BIRD
//! (`docs/design/routed-rails.md`). railyard writes no BGP: the daemon
//! generates BIRD's configuration from the plan and asks the BIRD running
//! beside it to reload. What to announce and accept is decided in
//! `railyard_core::fabric`; [`config`] only writes it in BIRD's language,
//! and the [`BirdControl`] port puts it in force: [`BirdFile`] on a real
//! BIRD, [`MemoryBird`] in memory, one conformance suite for both
//! (`conformance`, feature `conformance`).

pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod file;
pub mod guard;
pub mod memory;
pub mod port;

pub use config::render;
pub use file::BirdFile;
pub use memory::MemoryBird;
pub use port::{declared_protocols, heartbeat_path, Applied, BirdControl, BirdError};

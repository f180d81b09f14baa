//! Announcing a routed host's blocks to its leaves over BGP, through BIRD
//! (`docs/design/routed-rails.md`). railyard writes no BGP: the daemon
//! generates BIRD's configuration from the plan and asks the BIRD running
//! beside it to reload. What to announce and accept is decided in
//! `railyard_core::fabric`; [`config`] only writes it in BIRD's language.

pub mod config;

pub use config::render;

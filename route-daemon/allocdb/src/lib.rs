//! railyard-allocdb: the pod address allocations of one host, durable.
//!
//! The route-daemon serves the IPAM protocol from this engine's typed
//! operations (add, del, check, gc, status, adopt, ...); the wire types and the
//! CNI error codes stay on the daemon's side. It owns, per
//! network, this host's blocks from the plan and a bitmap allocator per block, and
//! the attachments holding addresses in them. Decisions are pure (the attach
//! policy in `railyard_core::attach`, the block allocator in `railyard_core::alloc`);
//! this crate adds what makes them safe to act on:
//!
//! - every decision is in an append-only log, checksummed per record and fsynced
//!   before the caller hears of it, so a crash never hands an address out twice;
//! - concurrent callers share fsyncs (group commit), because one fsync per pod
//!   would cap a host at a few hundred pods per second;
//! - recovery replays the log and cuts a torn tail; compaction replaces the log
//!   with a snapshot so replay stays short;
//! - changes are exposed as a feed so the daemon mirrors them to etcd in batches
//!   instead of one write per pod.
//!
//! No sockets, no etcd and no wire protocol here: the daemon wires those.

mod block;
mod choose;
mod crc;
mod db;
mod error;
mod frame;
mod model;
mod recover;
mod retain;
mod state;
mod writer;

pub use db::{AllocDb, Options, MAX_CONTAINER_ID, RETRY_EVERY};
pub use error::{DbError, Result};
pub use frame::{LOG_FORMAT, MIN_LOG_FORMAT};
pub use model::{
    AddArgs, Adopted, Attachment, BlockStats, Change, ChangeEvent, Changes, NetworkConfig, Stats,
    WalStats,
};
pub use recover::check_format;
pub use retain::{is_retained, retained_id, RETAINED_PREFIX, STATEFUL_SET};

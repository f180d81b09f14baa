//! The CNI protocol, spec versions 0.3.0 to 1.1.0, as a plugin sees it.
//!
//! Split by what changes for different reasons: the environment
//! ([`env`](mod@env)), the stdin config ([`config`]), versions ([`version`]), the
//! result format ([`result`]), the invocation contract ([`driver`]) and
//! the one check that looks at the host, [`netns`].

pub mod config;
pub(crate) mod decode;
pub mod driver;
pub mod env;
pub mod netns;
pub mod result;
pub mod version;

pub use config::{GcAttachment, NetConf};
pub use driver::{run, run_main, AttachRequest, GcRequest, Handler, Output, StatusRequest};
pub use env::{Attachment, CniArgs, CniEnv, Command, PodRef};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{CniVersion, VersionInfo};

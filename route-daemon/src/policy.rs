//! Policy rules (`from <subnet> lookup <table>`) as a port, so the daemon's loop
//! can keep them in step with the networks against the kernel or an in-memory fake.
//!
//! Ownership works as for routes: railyard lists, and removes, only the rules that
//! carry its protocol number. The rules double as the daemon's memory of which
//! tables it manages: a network deleted while the daemon was down still has its
//! rule, and the rule names the table whose routes must go.

use std::fmt;

use async_trait::async_trait;
use ipnet::IpNet;

use crate::error::Result;
use crate::reconcile::RouteTable;

/// `from <from> lookup <table> priority <priority>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    pub from: IpNet,
    pub table: u32,
    pub priority: u32,
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} lookup {} priority {}",
            self.from, self.table, self.priority
        )
    }
}

#[async_trait]
pub trait PolicyRules: Send + Sync {
    /// The rules railyard wrote (its protocol number), both families.
    async fn owned_rules(&self) -> Result<Vec<PolicyRule>>;
    /// Makes sure the rule exists; true when it had to be created. An identical
    /// rule of someone else's counts as existing.
    async fn ensure_policy_rule(&self, rule: PolicyRule) -> Result<bool>;
    /// Removes our copy of the rule; true when there was one.
    async fn remove_policy_rule(&self, rule: PolicyRule) -> Result<bool>;
}

/// Everything the daemon's loop needs from a kernel.
pub trait Kernel: RouteTable + PolicyRules {}

impl<T: RouteTable + PolicyRules> Kernel for T {}

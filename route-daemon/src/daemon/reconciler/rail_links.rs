//! Keeping this host's rail interfaces as the networks' `spec.ifacer` asks:
//! list the links, plan (`ifacer.rs`, pure), apply the steps in order.

use tracing::{info, warn};

use super::ifacer::plan_ifacers;
use super::Reconciler;
use crate::kernel::{Kernel, StepOutcome};

impl<K: Kernel + 'static> Reconciler<K> {
    /// One pass: true when every step went through. Steps depend on the ones
    /// before (an address moves onto the VLAN just made), so the first refusal
    /// or error ends the pass; the loop retries it with its backoff, on a fresh
    /// listing. Problems (a conflict, a refused slave, a name too long) are
    /// logged on every pass and not retried: a link event re-runs the pass
    /// when the host changes.
    pub(super) async fn sync_ifacers(&self) -> bool {
        if self.ifacers.is_empty() {
            // No network asks for any: not even a listing.
            return true;
        }
        let links = match self.kernel.rail_links().await {
            Ok(links) => links,
            Err(e) => {
                warn!(error = %e, "cannot list links for the rail interfaces; retrying");
                return false;
            }
        };
        let plan = plan_ifacers(&self.ifacers.wanted(), &links);
        for problem in &plan.problems {
            warn!(%problem, "rail interface left as it is");
        }
        for step in &plan.steps {
            match self.kernel.apply_link_step(step).await {
                Ok(StepOutcome::Done) => info!(%step, "rail interface"),
                Ok(StepOutcome::Refused(reason)) => {
                    warn!(%step, %reason, "rail interface step refused; retrying");
                    return false;
                }
                Err(e) => {
                    warn!(%step, error = %e, "rail interface step failed; retrying");
                    return false;
                }
            }
        }
        true
    }
}

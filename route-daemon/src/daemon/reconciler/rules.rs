//! Keeping the `from <subnet> lookup <table>` rules in step with the networks.

use std::collections::BTreeSet;

use tracing::{info, warn};

use super::Reconciler;
use crate::kernel::{Kernel, PolicyRule};

impl<K: Kernel + 'static> Reconciler<K> {
    /// Adds the wanted rules and removes our others, but a rule of a gone network
    /// only once its table is empty: until then the rule is how a restarted
    /// daemon would find that table again. True when all went through.
    pub(super) async fn sync_rules(
        &self,
        want: &BTreeSet<PolicyRule>,
        owned: Option<&[PolicyRule]>,
        cleaned: &BTreeSet<u32>,
    ) -> bool {
        let mut ok = true;
        for rule in want {
            match self.kernel.ensure_policy_rule(*rule).await {
                Ok(true) => info!(%rule, "policy rule added"),
                Ok(false) => {}
                Err(e) => {
                    warn!(%rule, error = %e, "cannot add policy rule");
                    ok = false;
                }
            }
        }
        for rule in owned.unwrap_or_default() {
            let table_in_use = want.iter().any(|w| w.table == rule.table);
            if want.contains(rule) || (!table_in_use && !cleaned.contains(&rule.table)) {
                continue;
            }
            match self.kernel.remove_policy_rule(*rule).await {
                Ok(_) => info!(%rule, "policy rule removed"),
                Err(e) => {
                    warn!(%rule, error = %e, "cannot remove policy rule");
                    ok = false;
                }
            }
        }
        ok
    }
}

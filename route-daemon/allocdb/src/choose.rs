//! External IPAM's question (`multiNICIPAM: false`): which NICs would the
//! attach policy give this pod, and what are their host blocks? Answered by
//! the same selection as an ADD ([`Core::allocate`]: the candidates, the
//! pod's selection, the policy's `select_nics`), but nothing is allocated,
//! logged or remembered: the external IPAM plugin hands out the addresses,
//! inside the blocks named here, and keeps its own record.
//!
//! What that costs: the `balance` policy does not see these pods (they hold
//! no addresses here), and the daemon cannot answer CHECK or GC for them;
//! railyard-cni asks the external plugin instead.

use railyard_core::attach::DeviceClass;
use railyard_core::external_ipam::excludes_in;
use railyard_core::ipam::{ChosenBlock, NicChoice};
use railyard_core::Nic;

use crate::error::{DbError, Result};
use crate::model::AddArgs;
use crate::state::{pick, Core};

impl Core {
    /// The NICs the pod gets, in the policy's ranking order, each with this
    /// host's planned blocks on it (primary family first), their gateways,
    /// the network's excludes inside them and the pod's routes.
    pub fn choose(
        &self,
        args: &AddArgs,
        nics: &[Nic],
        classes: &[DeviceClass],
    ) -> Result<Vec<NicChoice>> {
        let id = &args.attachment;
        let net = self
            .networks
            .get(&id.network)
            .filter(|n| n.blocks.iter().any(|b| b.in_plan))
            .ok_or_else(|| DbError::UnknownNetwork(id.network.clone()))?;
        let (selection, picked) = pick(net, &self.nic_load, args, nics, classes)?;
        let refused = if !selection.ips.is_empty() {
            Some("static addresses (ips)")
        } else if selection.pool.is_some() || !selection.pool_ips.is_empty() {
            Some("a workload pool (pool, ipPool)")
        } else {
            None
        };
        if let Some(what) = refused {
            return Err(DbError::Invalid(format!(
                "{what} come from railyard's own IPAM; network {} allocates with an external \
                 IPAM (multiNICIPAM: false), which picks the addresses itself",
                id.network
            )));
        }
        let cfg = &net.config;
        let mut out = Vec::with_capacity(picked.len());
        for c in picked {
            let mut choice: Option<NicChoice> = None;
            for b in net
                .blocks
                .iter()
                .filter(|b| b.in_plan && b.block.nic == c.name)
            {
                let cidr = b.cidr();
                // None for a network without gateways: device routes, as
                // an ADD gives them.
                let gw = b.alloc.gateway();
                let n = choice.get_or_insert_with(|| NicChoice {
                    nic: b.block.nic,
                    interface: c.interface,
                    blocks: Vec::new(),
                    routes: Vec::new(),
                });
                n.blocks.push(ChosenBlock {
                    cidr,
                    gateway: gw,
                    excludes: excludes_in(&cidr, &cfg.excludes),
                });
                n.routes.extend(net.pod_routes(&b.block, c.interface, gw));
            }
            // Candidates are made from this network's planned blocks.
            out.extend(choice);
        }
        Ok(out)
    }
}

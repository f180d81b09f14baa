//! `from <subnet> lookup <table>` policy rules: the traffic of a network's pods
//! uses the network's own table, the rest of the host never sees those routes.

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::route::{RouteHeader, RouteProtocol};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;

use async_trait::async_trait;

use super::{NetlinkRoutes, RAILYARD_PROTOCOL};
use crate::error::{Error, Result};
use crate::kernel::{PolicyRule, PolicyRules};

const EEXIST: i32 = 17;

/// The rule railyard writes: tagged with our protocol, so `remove_rule` can tell
/// it from an operator's identical one.
pub fn rule_message(from: IpNet, table: u32, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = match from {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.src_len = from.prefix_len();
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.action = RuleAction::ToTable;
    msg.attributes = vec![
        RuleAttribute::Source(from.network()),
        RuleAttribute::Table(table),
        RuleAttribute::Priority(priority),
        RuleAttribute::Protocol(RouteProtocol::from(RAILYARD_PROTOCOL)),
    ];
    msg
}

/// Whether `msg` is `from <from> lookup <table> priority <priority>` and nothing
/// more (a rule with extra selectors does not steer all of the subnet's traffic).
pub fn rule_matches(msg: &RuleMessage, from: IpNet, table: u32, priority: u32) -> bool {
    let mut src: Option<IpAddr> = None;
    let mut rule_table = u32::from(msg.header.table);
    let mut prio = 0;
    let mut extra = msg.header.dst_len != 0 || msg.header.tos != 0;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Source(ip) => src = Some(*ip),
            RuleAttribute::Table(t) => rule_table = *t,
            RuleAttribute::Priority(p) => prio = *p,
            RuleAttribute::Destination(_)
            | RuleAttribute::Iifname(_)
            | RuleAttribute::Oifname(_)
            | RuleAttribute::FwMark(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_)
            | RuleAttribute::UidRange(_) => extra = true,
            _ => {}
        }
    }
    let same_src = src
        .and_then(|s| IpNet::new(s, msg.header.src_len).ok())
        .is_some_and(|n| n.trunc() == from.trunc());
    !extra
        && msg.header.action == RuleAction::ToTable
        && same_src
        && rule_table == table
        && prio == priority
}

/// The rule a kernel message describes, when it is a plain `from X lookup T` rule.
pub fn policy_rule_of(msg: &RuleMessage) -> Option<PolicyRule> {
    let mut src = None;
    let mut table = u32::from(msg.header.table);
    let mut priority = 0;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Source(ip) => src = Some(*ip),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = *p,
            _ => {}
        }
    }
    let from = IpNet::new(src?, msg.header.src_len).ok()?.trunc();
    let rule = PolicyRule {
        from,
        table,
        priority,
    };
    rule_matches(msg, from, table, priority).then_some(rule)
}

fn is_ours(msg: &RuleMessage) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == RAILYARD_PROTOCOL))
}

impl NetlinkRoutes {
    async fn matching_rules(
        &self,
        from: IpNet,
        table: u32,
        priority: u32,
    ) -> Result<Vec<RuleMessage>> {
        let v6 = matches!(from, IpNet::V6(_));
        Ok(self
            .netlink()
            .rules(v6)
            .await?
            .into_iter()
            .filter(|m| rule_matches(m, from, table, priority))
            .collect())
    }

    /// Makes sure `from <from> lookup <table> priority <priority>` exists; true
    /// when it had to be created. An identical rule of someone else's counts:
    /// a second copy would change nothing but the clutter.
    pub async fn ensure_rule(&self, from: IpNet, table: u32, priority: u32) -> Result<bool> {
        if !self.matching_rules(from, table, priority).await?.is_empty() {
            return Ok(false);
        }
        let mut req = self.netlink().handle().rule().add();
        *req.message_mut() = rule_message(from, table, priority);
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = Error::netlink(
                    format!("add rule from {from} lookup {table} priority {priority}"),
                    e,
                );
                // Created by a concurrent call between our check and our add.
                if err.errno() == Some(EEXIST) {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Removes our `from <from> lookup <table> priority <priority>` rules; true
    /// when one was there. Rules without railyard's protocol stay.
    pub async fn remove_rule(&self, from: IpNet, table: u32, priority: u32) -> Result<bool> {
        let mut removed = false;
        for msg in self.matching_rules(from, table, priority).await? {
            if !is_ours(&msg) {
                continue;
            }
            self.netlink()
                .handle()
                .rule()
                .del(msg)
                .execute()
                .await
                .map_err(|e| {
                    Error::netlink(format!("delete rule from {from} lookup {table}"), e)
                })?;
            removed = true;
        }
        Ok(removed)
    }
}

#[async_trait]
impl PolicyRules for NetlinkRoutes {
    async fn owned_rules(&self) -> Result<Vec<PolicyRule>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for msg in self.netlink().rules(v6).await? {
                if is_ours(&msg) {
                    out.extend(policy_rule_of(&msg));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn ensure_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        self.ensure_rule(rule.from, rule.table, rule.priority).await
    }

    async fn remove_policy_rule(&self, rule: PolicyRule) -> Result<bool> {
        self.remove_rule(rule.from, rule.table, rule.priority).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_rule_matches_itself_and_not_its_neighbours() {
        let from: IpNet = "10.1.0.0/16".parse().expect("net");
        let msg = rule_message(from, 70_000, 3000);
        assert!(rule_matches(&msg, from, 70_000, 3000));
        assert!(is_ours(&msg));
        // The kernel may echo the unmasked source an operator typed.
        assert!(rule_matches(
            &msg,
            "10.1.2.3/16".parse().expect("net"),
            70_000,
            3000
        ));
        assert!(!rule_matches(&msg, from, 70_001, 3000));
        assert!(!rule_matches(&msg, from, 70_000, 3001));
        assert!(!rule_matches(
            &msg,
            "10.1.0.0/17".parse().expect("net"),
            70_000,
            3000
        ));
        let mut narrower = msg.clone();
        narrower
            .attributes
            .push(RuleAttribute::Iifname("eth0".into()));
        assert!(!rule_matches(&narrower, from, 70_000, 3000));
        assert_eq!(policy_rule_of(&narrower), None);
        assert_eq!(
            policy_rule_of(&msg),
            Some(PolicyRule {
                from,
                table: 70_000,
                priority: 3000
            })
        );
    }

    #[test]
    fn v6_rule_has_v6_family() {
        let msg = rule_message("fd00:1::/48".parse().expect("net"), 254, 3000);
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.table, 254);
    }
}

//! host-device pods: which spare NIC of each rail goes into the pod.
//!
//! The host-device plugin moves a whole link into the pod. Handing it the
//! rail NIC itself (what `device = <NIC>` would do) takes the rail away
//! from the host: the route-daemon's routes, the gateway shim and every
//! other pod on that rail lose it. So a host-device network needs *spare*
//! links on each rail's L2 (a second port, a VF made by hand, a veth into
//! the rail's switch), and railyard-cni picks one per selected rail:
//!
//! - **Which links are a rail's spares**: `delegate.spareDevices`, a name
//!   pattern with `{nic}` (the rail NIC's name) and `{rail}` (its rail) and
//!   the glob wildcards `*` and `?`; `"{nic}s*"` by default (`eth1s0`,
//!   `eth1s1` for NIC `eth1`). A pattern, not a list, so one config serves
//!   every host and rail. The rail NICs themselves never match.
//! - **Which spare**: the first free one in name order, numbers compared as
//!   numbers (`s2` before `s10`), so a host's spares are used in a
//!   predictable order an operator can read off `ip link`.
//! - **Free** means: in the host's network namespace (a spare in a pod is
//!   not), and not recorded by another attachment's state (a spare chosen
//!   by a concurrent ADD is still in the host until its delegate has run).
//!   ADDs on one host choose under one host-wide `flock`
//!   (`<stateDir>/host-devices.lock`) held from reading the records until
//!   the chosen spares are written into this attachment's record, so two
//!   never choose the same link. The record's `device` is what DEL and
//!   CHECK replay (host-device's DEL moves the link back to the host under
//!   its old name), and a re-ADD keeps the spares its record holds.
//! - **None free** fails the ADD with code 103, naming the rail NIC, the
//!   pattern and what matched; the allocation is rolled back like any
//!   failure after IPAM.
//!
//! The CNI-standard `runtimeConfig.deviceID` (a device plugin's choice, a
//! PCI address), or failing that a top-level `deviceID` (where Multus puts
//! it), is honoured for a pod with one rail: it goes to host-device as
//! `pciBusID` and no spare is chosen. One device cannot serve several
//! rails, so a pod with more is refused (code 7); per-rail device plugin
//! resources are SR-IOV's, a later step.
//!
//! The matching and choosing are pure ([`SpareTemplate`], [`choose`]) and
//! unit tested below; listing links and reading records is `Run`'s (meta/mod.rs).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::Error;

/// The key in `delegate` (from a MultiNicNetwork's `plugin.args`).
pub const FIELD: &str = "delegate.spareDevices";
/// Its key inside `delegate`.
pub const KEY: &str = "spareDevices";
/// Spares are named after their rail NIC unless the config says otherwise.
pub const DEFAULT: &str = "{nic}s*";
/// The key of a device plugin's choice: in `runtimeConfig` (the CNI
/// convention, [`RUNTIME_DEVICE_ID`]) or at the top level of the config
/// (where Multus adds it for a network with a resource name).
pub const DEVICE_ID: &str = "deviceID";
/// [`DEVICE_ID`] as the CNI convention passes it.
pub const RUNTIME_DEVICE_ID: &str = "runtimeConfig.deviceID";
/// What a [`DEVICE_ID`] becomes in host-device's config.
pub const PCI_BUS_ID: &str = "pciBusID";
/// The host-device key naming a link.
pub const DEVICE: &str = "device";
/// The delegate keys that pick host-device's link in other ways: refused
/// in `delegate` when railyard-cni picks it (host-device would take the
/// first it finds and ignore the others).
pub const OTHER_SELECTORS: [&str; 4] = [PCI_BUS_ID, "hwaddr", "kernelpath", "runtimeConfig"];

/// Linux's IFNAMSIZ less the NUL.
const MAX_NAME: usize = 15;

/// A parsed `spareDevices`; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpareTemplate {
    text: String,
}

impl Default for SpareTemplate {
    fn default() -> Self {
        SpareTemplate {
            text: DEFAULT.to_owned(),
        }
    }
}

impl SpareTemplate {
    /// Checks the pattern's own text; code 7 naming the field otherwise.
    pub fn parse(text: &str) -> Result<SpareTemplate, Error> {
        let bad = |why: String| Error::invalid_config(FIELD, format!("= {text:?}: {why}"));
        if text.is_empty() {
            return Err(bad("is empty; name the spares, e.g. \"{nic}s*\"".into()));
        }
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            let tail = &rest[at..];
            let len = ["{nic}", "{rail}"]
                .iter()
                .find(|p| tail.starts_with(**p))
                .map(|p| p.len())
                .ok_or_else(|| {
                    bad(format!(
                        "unknown placeholder at {tail:?}; use {{nic}} or {{rail}}"
                    ))
                })?;
            rest = &tail[len..];
        }
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err(bad(format!(
                "{c:?} cannot be in a Linux interface name \
                 ('/', ':', '%', whitespace and control characters are refused)"
            )));
        }
        Ok(SpareTemplate {
            text: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The glob for rail NIC `nic` on `rail`. A pattern with `{rail}` and
    /// an IPAM that did not say the rail is an error rather than a guess.
    pub fn pattern(&self, nic: &str, rail: Option<u32>) -> Result<String, Error> {
        let mut out = self.text.replace("{nic}", nic);
        if out.contains("{rail}") {
            let Some(rail) = rail else {
                return Err(Error::invalid_config(
                    FIELD,
                    format!(
                        "= {:?} names spares by rail, but the IPAM plugin did not say which \
                         rail NIC {nic:?} is on (an older railyard-ipam?)",
                        self.text
                    ),
                ));
            };
            out = out.replace("{rail}", &rail.to_string());
        }
        Ok(out)
    }
}

/// What [`SpareTemplate::parse`] lets through besides the wildcards: what
/// Linux accepts in a name, as `ifNameTemplate` does.
fn allowed(c: char) -> bool {
    !(c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
}

/// Whether `name` matches `pattern`: `*` any run of characters (also
/// none), `?` exactly one, anything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative with one backtrack point (the last `*`): linear enough for
    // link names, and no recursion to blow up on `****`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Name order with digit runs compared as numbers: `s2` < `s10`. Ties (`s02`
/// against `s2`) fall back to plain byte order, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (xn, xr) = split_digits(x);
                let (yn, yr) = split_digits(y);
                let (xs, ys) = (trim_zeros(xn), trim_zeros(yn));
                let by_value = xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (x, y) = (xr, yr);
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| *c != b'0').unwrap_or(s.len());
    &s[start..]
}

/// One rail of the pod that needs a spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The rail NIC (the IPAM's), which the spare stands in for.
    pub nic: String,
    pub rail: Option<u32>,
    /// The spare this attachment's own record holds for `nic` (a re-ADD):
    /// kept, so the interfaces rebuilt are the ones the pod had.
    pub kept: Option<String>,
}

/// The spare for each of `wants`, in order: the kept one if any, else the
/// first link of `links` (the host's, any order) in [`natural_cmp`] order
/// that matches the rail's pattern, is no rail NIC of `wants`, is not in
/// `taken` (recorded by other attachments) and was not chosen for an
/// earlier want. No free spare is [`Error::NoFreeDevice`].
pub fn choose(
    template: &SpareTemplate,
    wants: &[Want],
    links: &[String],
    taken: &BTreeSet<String>,
) -> Result<Vec<String>, Error> {
    let mut sorted: Vec<&String> = links.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(a, b));
    let nics: BTreeSet<&str> = wants.iter().map(|w| w.nic.as_str()).collect();
    let mut chosen: Vec<String> = Vec::with_capacity(wants.len());
    for want in wants {
        if let Some(kept) = &want.kept {
            chosen.push(kept.clone());
            continue;
        }
        let pattern = template.pattern(&want.nic, want.rail)?;
        let free = sorted.iter().find(|l| {
            glob_match(&pattern, l)
                && !nics.contains(l.as_str())
                && !taken.contains(l.as_str())
                && !chosen.contains(l)
        });
        match free {
            Some(l) => chosen.push((*l).clone()),
            None => {
                let reason = why_none(&pattern, taken, &chosen);
                return Err(Error::NoFreeDevice {
                    nic: want.nic.clone(),
                    rail: want.rail,
                    template: template.as_str().to_owned(),
                    pattern,
                    reason,
                });
            }
        }
    }
    Ok(chosen)
}

/// Why no link is free for `pattern`, for the operator: nothing matches, or
/// what matches is in use, by whom. A host link that matches and is in
/// neither set would have been chosen, so these two sets are all there is.
fn why_none(pattern: &str, taken: &BTreeSet<String>, chosen: &[String]) -> String {
    let by_others: Vec<&str> = taken
        .iter()
        .filter(|t| glob_match(pattern, t))
        .map(String::as_str)
        .collect();
    let by_this: Vec<&str> = chosen
        .iter()
        .filter(|c| glob_match(pattern, c))
        .map(String::as_str)
        .collect();
    if by_others.is_empty() && by_this.is_empty() {
        return "no link of this host's network namespace matches it".into();
    }
    let mut why = String::from("every spare matching it is in use");
    if !by_others.is_empty() {
        why.push_str(&format!(
            ": {} by other attachments ({})",
            by_others.len(),
            by_others.join(", ")
        ));
    }
    if !by_this.is_empty() {
        why.push_str(&format!(
            "; {} chosen for this pod's other rails ({})",
            by_this.len(),
            by_this.join(", ")
        ));
    }
    why
}

/// Checks a device plugin's choice (`field`, [`RUNTIME_DEVICE_ID`] or
/// [`DEVICE_ID`]) for host-device's `pciBusID`: a non-empty string that
/// cannot escape host-device's sysfs path.
pub fn device_id(field: &str, value: &serde_json::Value) -> Result<String, Error> {
    match value.as_str() {
        Some(id) if !id.is_empty() && id.len() <= 64 && !id.contains('/') && id != ".." => {
            Ok(id.to_owned())
        }
        _ => Err(Error::invalid_config(
            field,
            format!(
                "= {value}: must be the device's PCI address as a string (e.g. \"0000:3b:00.1\")"
            ),
        )),
    }
}

/// Longest name Linux allows; a longer listing entry cannot be a link.
pub fn fits(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;

    fn links(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn want(nic: &str, rail: u32) -> Want {
        Want {
            nic: nic.into(),
            rail: Some(rail),
            kept: None,
        }
    }

    #[test]
    fn globs_match_whole_names() {
        for (p, n) in [
            ("eth1s*", "eth1s0"),
            ("eth1s*", "eth1s"),
            ("eth1s?", "eth1s7"),
            ("*", "anything"),
            ("a*b*c", "aXXbYYc"),
            ("a*b", "abab"),
            ("spare0-*", "spare0-12"),
            ("exact", "exact"),
        ] {
            assert!(glob_match(p, n), "{p} should match {n}");
        }
        for (p, n) in [
            ("eth1s*", "eth1"),
            ("eth1s*", "eth10s0"),
            ("eth1s?", "eth1s10"),
            ("a*b", "abac"),
            ("spare0-*", "spare01"),
            ("exact", "exact1"),
        ] {
            assert!(!glob_match(p, n), "{p} should not match {n}");
        }
    }

    #[test]
    fn numbers_sort_as_numbers() {
        let mut names = links(&["s10", "s2", "s1", "s02", "t0", "s", "s1a"]);
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["s", "s1", "s1a", "s02", "s2", "s10", "t0"]);
        assert_eq!(natural_cmp("spare0-9", "spare0-10"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    }

    #[test]
    fn templates_are_checked_and_rendered() {
        let t = SpareTemplate::parse("spare{rail}-*").unwrap();
        assert_eq!(t.pattern("rail3", Some(3)).unwrap(), "spare3-*");
        let d = SpareTemplate::default();
        assert_eq!(d.pattern("ens2f1", Some(0)).unwrap(), "ens2f1s*");
        assert_eq!(d.pattern("ens2f1", None).unwrap(), "ens2f1s*");
        let err = t.pattern("rail3", None).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        assert!(err.to_string().contains(FIELD), "{err}");
        for bad in ["", "{rial}s*", "{nic", "a b*", "x/y", "s%d"] {
            let err = SpareTemplate::parse(bad).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG, "{bad}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(FIELD) && msg.contains(&format!("{bad:?}")),
                "{msg}"
            );
        }
    }

    #[test]
    fn the_first_free_spare_in_name_order_is_chosen_per_rail() {
        let t = SpareTemplate::default();
        let host = links(&[
            "eth1", "eth1s10", "eth1s2", "eth2", "eth2s0", "lo", "eth1s1",
        ]);
        let taken: BTreeSet<String> = ["eth1s1".to_owned()].into();
        let got = choose(&t, &[want("eth1", 0), want("eth2", 1)], &host, &taken).unwrap();
        assert_eq!(got, ["eth1s2", "eth2s0"]);
        // Nothing taken: s1 comes first.
        let got = choose(&t, &[want("eth1", 0)], &host, &BTreeSet::new()).unwrap();
        assert_eq!(got, ["eth1s1"]);
    }

    #[test]
    fn rail_nics_and_this_pods_earlier_choices_are_never_chosen() {
        // A pattern that matches the rail NICs themselves, and both rails
        // drawing from one pool.
        let t = SpareTemplate::parse("eth*").unwrap();
        let host = links(&["eth1", "eth2", "eth9"]);
        let got = choose(
            &t,
            &[want("eth1", 0), want("eth2", 1)],
            &host,
            &BTreeSet::new(),
        );
        let err = got.unwrap_err();
        assert_eq!(err.code(), codes::NO_FREE_DEVICE);
        let msg = err.to_string();
        assert!(msg.contains("\"eth2\"") && msg.contains("eth9"), "{msg}");
        assert!(msg.contains("chosen for this pod's other rails"), "{msg}");
    }

    #[test]
    fn a_re_add_keeps_its_spares_even_out_of_the_host() {
        let t = SpareTemplate::default();
        let mut w = want("eth1", 0);
        w.kept = Some("eth1s5".into());
        let got = choose(&t, &[w], &links(&["eth1s0"]), &BTreeSet::new()).unwrap();
        assert_eq!(got, ["eth1s5"]);
    }

    #[test]
    fn no_free_spare_names_the_nic_the_template_and_what_matched() {
        let t = SpareTemplate::parse("spare{rail}-*").unwrap();
        let taken: BTreeSet<String> = ["spare1-0".to_owned(), "spare1-1".to_owned()].into();
        let host = links(&["rail1", "spare1-0", "spare1-1", "spare0-0"]);
        let err = choose(&t, &[want("rail1", 1)], &host, &taken).unwrap_err();
        assert_eq!(err.code(), codes::NO_FREE_DEVICE);
        let msg = err.to_string();
        for part in [
            "\"rail1\"",
            "rail 1",
            "spare{rail}-*",
            "spare1-*",
            "2 by other attachments (spare1-0, spare1-1)",
        ] {
            assert!(msg.contains(part), "{part:?} missing from {msg}");
        }
        let none = choose(&t, &[want("rail2", 2)], &host, &taken).unwrap_err();
        assert!(none.to_string().contains("no link"), "{none}");
    }

    #[test]
    fn device_ids_are_pci_address_strings() {
        assert_eq!(
            device_id(RUNTIME_DEVICE_ID, &serde_json::json!("0000:3b:00.1")).unwrap(),
            "0000:3b:00.1"
        );
        for bad in [
            serde_json::json!(""),
            serde_json::json!(7),
            serde_json::json!("../../x"),
        ] {
            let err = device_id(DEVICE_ID, &bad).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
            assert!(err.to_string().contains("`deviceID`"), "{err}");
        }
        assert!(fits("spare0-1") && !fits("") && !fits("abcdefghijklmnop"));
    }
}

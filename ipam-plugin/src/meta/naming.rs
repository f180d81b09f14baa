//! The names railyard-cni gives the pod interfaces: `ifNameTemplate`.
//!
//! Why rail-stable by default (`{ifname}-{rail}`): NCCL and the RDMA
//! guides map an interface to a rail by name (`NCCL_SOCKET_IFNAME`,
//! topology files, per-rail routing). With names by ranking position a
//! pod holding rails 3 and 6 of 8 gets `net1-0` and `net1-1`, and the
//! same name means another rail in the next pod. `{ifname}-{index}` keeps
//! multi-nic-cni's naming (the policy's ranking order) for users who
//! depend on it.
//!
//! A template is checked twice: its literal text when the config is
//! parsed (no character Linux refuses in a name, room for the
//! placeholders), and each rendered name at ADD, when CNI_IFNAME and the
//! rails are known (at most 15 bytes, no two members alike).

use crate::cni::env::CNI_IFNAME;
use crate::Error;

/// The config key.
pub const FIELD: &str = "ifNameTemplate";
/// `<ifname>-<rail>`: `net1-3` is rail 3 in every pod.
pub const DEFAULT: &str = "{ifname}-{rail}";
/// Linux's IFNAMSIZ is 16 with the terminating NUL.
pub const MAX_NAME: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    IfName,
    Rail,
    Index,
}

/// A parsed `ifNameTemplate`; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfNameTemplate {
    text: String,
}

impl Default for IfNameTemplate {
    fn default() -> Self {
        IfNameTemplate {
            text: DEFAULT.to_owned(),
        }
    }
}

impl IfNameTemplate {
    /// Checks the template's own text; code 7 naming the field otherwise.
    pub fn parse(text: &str) -> Result<IfNameTemplate, Error> {
        let bad = |why: String| Error::invalid_config(FIELD, format!("= {text:?}: {why}"));
        let parts = split(text).map_err(bad)?;
        if !parts.iter().any(|p| matches!(p, Part::Rail | Part::Index)) {
            return Err(bad(
                "needs {rail} or {index}, or every NIC's interface gets the same name".into(),
            ));
        }
        for part in &parts {
            if let Part::Text(t) = part {
                if let Some(c) = t.chars().find(|c| !allowed(*c)) {
                    return Err(bad(format!(
                        "{c:?} cannot be in a Linux interface name \
                         ('/', ':', '%', whitespace and control characters are refused)"
                    )));
                }
            }
        }
        // Every placeholder renders to at least one byte.
        let shortest: usize = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                _ => 1,
            })
            .sum();
        if shortest > MAX_NAME {
            return Err(bad(format!(
                "its names are at least {shortest} bytes; Linux allows {MAX_NAME}"
            )));
        }
        Ok(IfNameTemplate {
            text: text.to_owned(),
        })
    }

    /// Whether names depend on the rail (and so need the IPAM to say it).
    pub fn uses_rail(&self) -> bool {
        split(&self.text).is_ok_and(|parts| parts.contains(&Part::Rail))
    }

    /// The name of the member at ranking position `index` on `rail`.
    /// `rail` is `None` when the IPAM did not say; a template that needs
    /// it is then an error rather than a guess. Too long a name is code 4
    /// on CNI_IFNAME (the runtime's choice), naming the template too.
    pub fn render(&self, ifname: &str, rail: Option<u32>, index: usize) -> Result<String, Error> {
        let parts = split(&self.text).map_err(|why| Error::invalid_config(FIELD, why))?;
        let mut name = String::new();
        for part in parts {
            match part {
                Part::Text(t) => name.push_str(t),
                Part::IfName => name.push_str(ifname),
                Part::Index => name.push_str(&index.to_string()),
                Part::Rail => match rail {
                    Some(r) => name.push_str(&r.to_string()),
                    None => {
                        return Err(Error::invalid_config(
                            FIELD,
                            format!(
                                "= {:?} names interfaces by rail, but the IPAM plugin did not \
                                 say which rail NIC #{index} is on (an older railyard-ipam?); \
                                 install the matching railyard-ipam or use {{index}}",
                                self.text
                            ),
                        ))
                    }
                },
            }
        }
        if name.len() > MAX_NAME {
            return Err(Error::InvalidEnv {
                name: CNI_IFNAME,
                value: ifname.to_owned(),
                reason: format!(
                    "{FIELD} {:?} makes {name:?}, which exceeds Linux's {MAX_NAME} bytes; \
                     use a shorter interface name or template",
                    self.text
                ),
            });
        }
        Ok(name)
    }

    /// Every member's name, in ranking order, for NICs on `rails`. Two
    /// alike (two NICs on one rail, with a template by rail only) is an
    /// error: the second delegate would fail on an existing link.
    pub fn render_all(&self, ifname: &str, rails: &[Option<u32>]) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = Vec::with_capacity(rails.len());
        for (index, rail) in rails.iter().enumerate() {
            let name = self.render(ifname, *rail, index)?;
            if let Some(first) = names.iter().position(|n| *n == name) {
                return Err(Error::invalid_config(
                    FIELD,
                    format!(
                        "= {:?} names NICs #{first} and #{index} both {name:?} (they are on \
                         one rail); add {{index}} to the template",
                        self.text
                    ),
                ));
            }
            names.push(name);
        }
        Ok(names)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Literal text and placeholders; `{` or `}` outside a known placeholder
/// is an error (a typo such as `{rial}` must not become part of a name).
fn split(text: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let literal = rest.find(['{', '}']).unwrap_or(rest.len());
        if literal > 0 {
            parts.push(Part::Text(&rest[..literal]));
            rest = &rest[literal..];
            continue;
        }
        let (part, len) = [
            ("{ifname}", Part::IfName),
            ("{rail}", Part::Rail),
            ("{index}", Part::Index),
        ]
        .into_iter()
        .find(|(p, _)| rest.starts_with(p))
        .map(|(p, part)| (part, p.len()))
        .ok_or_else(|| {
            format!("unknown placeholder at {rest:?}; use {{ifname}}, {{rail}} or {{index}}")
        })?;
        parts.push(part);
        rest = &rest[len..];
    }
    Ok(parts)
}

/// What Linux's `dev_valid_name` accepts, minus `%` (the kernel expands
/// `%d` in a new link's name to a free number: the name would not be ours).
fn allowed(c: char) -> bool {
    !(c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;

    fn names(t: &str, ifname: &str, rails: &[u32]) -> Vec<String> {
        let t = IfNameTemplate::parse(t).unwrap();
        rails
            .iter()
            .enumerate()
            .map(|(i, r)| t.render(ifname, Some(*r), i).unwrap())
            .collect()
    }

    #[test]
    fn the_default_names_rails_not_positions() {
        // Rails 6 and 3, ranked in that order by the policy.
        assert_eq!(names(DEFAULT, "net1", &[6, 3]), ["net1-6", "net1-3"]);
        assert_eq!(
            names("{ifname}-{index}", "net1", &[6, 3]),
            ["net1-0", "net1-1"]
        );
        assert_eq!(names("rail{rail}", "net1", &[6]), ["rail6"]);
        assert_eq!(
            names("{ifname}r{rail}i{index}", "net2", &[1, 7]),
            ["net2r1i0", "net2r7i1"]
        );
        assert!(IfNameTemplate::default().uses_rail());
        assert!(!IfNameTemplate::parse("x{index}").unwrap().uses_rail());
    }

    #[test]
    fn bad_templates_are_code_7_naming_the_field_and_value() {
        for (t, says) in [
            ("{ifname}", "needs {rail} or {index}"),
            ("net", "needs {rail} or {index}"),
            ("{ifname}-{rial}", "unknown placeholder"),
            ("{ifname}-{rail", "unknown placeholder"),
            ("net}{rail}", "unknown placeholder"),
            ("net/{rail}", "'/'"),
            ("net {rail}", "' '"),
            ("net:{rail}", "':'"),
            ("net%d{rail}", "'%'"),
            ("averyverylongname{rail}", "at least 18 bytes"),
        ] {
            let err = IfNameTemplate::parse(t).unwrap_err();
            assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG, "{t}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(FIELD) && msg.contains(says), "{t}: {msg}");
        }
    }

    #[test]
    fn a_rendered_name_must_fit_15_bytes() {
        let t = IfNameTemplate::default();
        assert_eq!(t.render("abcdefghijklm", Some(9), 0).unwrap().len(), 15);
        let err = t.render("abcdefghijklm", Some(10), 0).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_ENVIRONMENT);
        let msg = err.to_string();
        assert!(
            msg.contains("abcdefghijklm-10") && msg.contains(FIELD),
            "{msg}"
        );
    }

    #[test]
    fn two_nics_on_one_rail_need_the_index() {
        let t = IfNameTemplate::default();
        assert_eq!(
            t.render_all("net1", &[Some(3), Some(6)]).unwrap(),
            ["net1-3", "net1-6"]
        );
        let err = t.render_all("net1", &[Some(3), Some(3)]).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        assert!(err.to_string().contains("\"net1-3\""), "{err}");
        let both = IfNameTemplate::parse("{ifname}-{rail}-{index}").unwrap();
        assert_eq!(
            both.render_all("n", &[Some(3), Some(3)]).unwrap(),
            ["n-3-0", "n-3-1"]
        );
    }

    #[test]
    fn a_rail_template_without_rails_is_an_error_not_a_guess() {
        let err = IfNameTemplate::default()
            .render("net1", None, 0)
            .unwrap_err();
        assert_eq!(err.code(), codes::INVALID_NETWORK_CONFIG);
        assert!(err.to_string().contains("{index}"), "{err}");
        let by_index = IfNameTemplate::parse("{ifname}-{index}").unwrap();
        assert_eq!(by_index.render("net1", None, 2).unwrap(), "net1-2");
    }
}

//! MAC addresses a pod asks for (the CNI `mac` capability, `args.cni.macs`,
//! Kube-OVN's `mac_address` annotation): one parser for the plugin and the
//! daemon, so both refuse the same values with the same words.

use std::collections::BTreeMap;

/// `aa:bb:cc:dd:ee:ff` (or with `-`), lowercased; a unicast, non-zero MAC.
/// The error says what is wrong, for the caller to prefix with its field.
pub fn normalize(text: &str) -> Result<String, String> {
    let octets: Vec<&str> = text.trim().split([':', '-']).collect();
    if octets.len() != 6
        || octets
            .iter()
            .any(|o| o.len() != 2 || !o.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err("is not a MAC address (six hex pairs, like 02:00:c0:a8:40:05)".into());
    }
    let bytes: Vec<u8> = octets
        .iter()
        .map(|o| u8::from_str_radix(o, 16).unwrap_or_default())
        .collect();
    if bytes[0] & 1 == 1 {
        return Err("is a multicast address; an interface needs a unicast one".into());
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err("is all zeros".into());
    }
    Ok(octets.join(":").to_ascii_lowercase())
}

/// Two rails given one MAC, if any (each interface needs its own).
pub fn duplicate(per_rail: &BTreeMap<u32, String>) -> Option<(u32, u32)> {
    let entries: Vec<(&u32, &String)> = per_rail.iter().collect();
    entries.iter().enumerate().find_map(|(i, (ra, ma))| {
        entries[i + 1..]
            .iter()
            .find(|(_, mb)| mb == ma)
            .map(|(rb, _)| (**ra, **rb))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalized_and_bad_ones_explained() {
        assert_eq!(
            normalize(" 02-AA-00-00-00-10 ").unwrap(),
            "02:aa:00:00:00:10"
        );
        assert!(normalize("03:00:00:00:00:01")
            .unwrap_err()
            .contains("multicast"));
        assert!(normalize("00:00:00:00:00:00")
            .unwrap_err()
            .contains("zeros"));
        assert!(normalize("02:aa:00:00:00")
            .unwrap_err()
            .contains("six hex pairs"));
        let two = BTreeMap::from([
            (0, "02:aa:00:00:00:10".to_string()),
            (3, "02:aa:00:00:00:10".to_string()),
        ]);
        assert_eq!(duplicate(&two), Some((0, 3)));
    }
}

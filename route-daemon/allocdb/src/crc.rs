//! CRC-32C (Castagnoli), table-driven. Small enough to own rather than pull in a
//! crate for; it only has to tell a torn or bit-flipped log record from a good one.

const POLY: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Extends a running CRC (start with 0) over `bytes`.
pub(crate) fn extend(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for b in bytes {
        c = TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_standard_check_value() {
        assert_eq!(super::extend(0, b"123456789"), 0xe306_9283);
        let split = super::extend(super::extend(0, b"1234"), b"56789");
        assert_eq!(split, 0xe306_9283);
    }
}

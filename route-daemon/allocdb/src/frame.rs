//! The log's on-disk format: an 8-byte magic, then frames of
//! `[payload length: u32 LE][CRC-32C of length and payload: u32 LE][JSON payload]`.
//!
//! A crash can leave a frame half written; the checksum tells it from a good one so
//! recovery can cut the log at the last complete record. JSON keeps the log
//! readable with standard tools when an operator needs to know who held an address.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use railyard_core::ipam::AttachmentId;
use railyard_core::IfName;
use serde::{Deserialize, Serialize};

use crate::crc;
use crate::model::{Attachment, NetworkConfig};

/// The file's first 8 bytes as this build writes them: `RYALOG` and the
/// format version as two ASCII digits. Version 1 is the format every release
/// before the gateway setting wrote (the digits were there from the start,
/// so a log written before versions were checked reads as version 1);
/// version 2 adds `gateway` (and `pools`) to a network's config.
pub(crate) const MAGIC: &[u8; 8] = b"RYALOG02";
const MAGIC_PREFIX: &[u8; 6] = b"RYALOG";
/// The version this build writes, and the highest it reads (see
/// `docs/design/allocation-log.md`, "Format versions").
pub const LOG_FORMAT: u32 = 2;
/// The lowest version this build reads.
pub const MIN_LOG_FORMAT: u32 = 1;
const HEADER: usize = 8;

/// What the first bytes of a log file say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// Empty, or a prefix of the magic: a crash while the file was created,
    /// before anything was acknowledged.
    Unborn,
    /// A log of a version this build reads: this one, or an older one that
    /// is converted on open.
    Readable(u32),
    /// A railyard log of another version: refused, the file left untouched.
    Version(u32),
    /// Not a railyard log at all.
    Foreign,
}

/// Reads the header without trusting anything after it.
pub(crate) fn header(bytes: &[u8]) -> Header {
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        return Header::Unborn;
    }
    let Some(digits) = bytes
        .strip_prefix(MAGIC_PREFIX)
        .and_then(|rest| rest.get(..2))
    else {
        return Header::Foreign;
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Header::Foreign;
    }
    let version = u32::from(digits[0] - b'0') * 10 + u32::from(digits[1] - b'0');
    if (MIN_LOG_FORMAT..=LOG_FORMAT).contains(&version) {
        Header::Readable(version)
    } else {
        Header::Version(version)
    }
}
/// A bound on one frame so a corrupt length cannot make recovery allocate wildly;
/// a snapshot of a million attachments stays well below it.
const MAX_PAYLOAD: usize = 1 << 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Record {
    Network(Arc<NetworkConfig>),
    Add(Arc<Attachment>),
    /// One DEL, or every attachment a GC released: one record, so a GC is atomic.
    Release(Vec<AttachmentId>),
    /// The whole state as of this record; only ever the first frame of a log file.
    Snapshot(Box<Snapshot>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    pub networks: Vec<Arc<NetworkConfig>>,
    pub attachments: Vec<Arc<Attachment>>,
    /// Per block, the last address handed out: delayed reuse resumes after it.
    pub cursors: Vec<(IpNet, IpAddr)>,
    /// (network, rail, family index, NIC): the rails this host is owed.
    #[serde(default)]
    pub rails_seen: Vec<(String, u32, usize, IfName)>,
    /// Releases whose etcd mirror record may still exist.
    #[serde(default)]
    pub released: Vec<AttachmentId>,
}

#[derive(Serialize)]
struct FrameOut<'a> {
    lsn: u64,
    rec: &'a Record,
}

#[derive(Deserialize)]
struct FrameIn {
    lsn: u64,
    rec: Record,
}

/// Appends one frame to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, lsn: u64, rec: &Record) -> serde_json::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    if let Err(e) = serde_json::to_writer(&mut *buf, &FrameOut { lsn, rec }) {
        buf.truncate(start);
        return Err(e);
    }
    let len = (buf.len() - start - HEADER) as u32;
    let len_bytes = len.to_le_bytes();
    let sum = crc::extend(crc::extend(0, &len_bytes), &buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + HEADER].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// Where reading a log stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte belonged to a good frame.
    Clean,
    /// The bytes from `offset` on are a torn or corrupt frame (a crash mid-write).
    Torn { offset: usize, reason: String },
    /// A frame with a good checksum that does not decode: refuse, do not truncate.
    Unreadable { offset: usize, reason: String },
}

/// Calls `apply` for each good frame after the magic, in order; an `Err` from it
/// stops the read as unreadable.
pub(crate) fn read(bytes: &[u8], mut apply: impl FnMut(u64, Record) -> Result<(), String>) -> End {
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let torn = |reason: String| End::Torn {
            offset: pos,
            reason,
        };
        let rest = &bytes[pos..];
        if rest.len() < HEADER {
            return torn(format!("{} bytes, shorter than a frame header", rest.len()));
        }
        let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let sum = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_PAYLOAD || len > rest.len() - HEADER {
            return torn(format!(
                "frame of {len} bytes, {} left in the file",
                rest.len() - HEADER
            ));
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc::extend(crc::extend(0, &len_bytes), payload) != sum {
            return torn("checksum mismatch".into());
        }
        let applied = serde_json::from_slice::<FrameIn>(payload)
            .map_err(|e| e.to_string())
            .and_then(|f| apply(f.lsn, f.rec));
        if let Err(reason) = applied {
            return End::Unreadable {
                offset: pos,
                reason,
            };
        }
        pos += HEADER + len;
    }
    End::Clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u64) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        for lsn in 1..=n {
            encode(&mut buf, lsn, &Record::Release(vec![])).unwrap();
        }
        buf
    }

    #[test]
    fn every_cut_inside_a_frame_is_detected() {
        let buf = frames(3);
        let whole = buf.len();
        let one = (whole - MAGIC.len()) / 3;
        for cut in MAGIC.len()..whole {
            let mut seen = 0;
            let end = read(&buf[..cut], |_, _| {
                seen += 1;
                Ok(())
            });
            let done = (cut - MAGIC.len()) / one;
            assert_eq!(seen, done, "cut at {cut}");
            if (cut - MAGIC.len()) % one == 0 {
                assert_eq!(end, End::Clean);
            } else {
                assert!(
                    matches!(end, End::Torn { offset, .. } if offset == MAGIC.len() + done * one)
                );
            }
        }
    }

    proptest::proptest! {
        /// Whatever follows good frames (a torn write, garbage, another file's
        /// bytes), recovery never panics, keeps every good frame before it and
        /// stops inside the file.
        #[test]
        fn any_tail_after_good_frames_is_read_safely(
            good in 0u64..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut buf = frames(good);
            let clean = buf.len();
            buf.extend_from_slice(&tail);
            let mut seen = Vec::new();
            let end = read(&buf, |lsn, _| {
                seen.push(lsn);
                Ok(())
            });
            proptest::prop_assert!(seen.len() as u64 >= good);
            proptest::prop_assert_eq!(&seen[..good as usize], &(1..=good).collect::<Vec<_>>()[..]);
            match end {
                End::Clean => {}
                End::Torn { offset, .. } | End::Unreadable { offset, .. } => {
                    proptest::prop_assert!(offset >= clean && offset < buf.len());
                }
            }
        }
    }

    #[test]
    fn the_header_names_the_version() {
        assert_eq!(header(b""), Header::Unborn);
        assert_eq!(header(b"RYAL"), Header::Unborn);
        assert_eq!(header(MAGIC), Header::Readable(LOG_FORMAT));
        assert_eq!(header(b"RYALOG01\x05\0\0\0"), Header::Readable(1));
        assert_eq!(header(b"RYALOG02"), Header::Readable(2));
        assert_eq!(header(b"RYALOG03"), Header::Version(3));
        assert_eq!(header(b"RYALOG99rest"), Header::Version(99));
        assert_eq!(header(b"RYALOG00"), Header::Version(0));
        assert_eq!(header(b"RYALOGx1"), Header::Foreign);
        assert_eq!(header(b"RYALOG0"), Header::Unborn);
        assert_eq!(header(b"RYALOG"), Header::Unborn);
        assert_eq!(header(b"{\"lsn\":1}"), Header::Foreign);
        assert_eq!(header(b"RYALOX01"), Header::Foreign);
    }

    proptest::proptest! {
        /// Any first bytes are classified without a panic.
        #[test]
        fn any_header_is_classified(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12)) {
            let _ = header(&bytes);
        }
    }

    #[test]
    fn a_flipped_bit_stops_the_read_there() {
        let mut buf = frames(3);
        let last = buf.len() - 3;
        buf[last] ^= 0x10;
        let mut seen = Vec::new();
        let end = read(&buf, |lsn, _| {
            seen.push(lsn);
            Ok(())
        });
        assert_eq!(seen, [1, 2]);
        assert!(matches!(end, End::Torn { ref reason, .. } if reason == "checksum mismatch"));
    }
}

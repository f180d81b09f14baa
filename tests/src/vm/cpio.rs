//! The initramfs archive: the kernel's "newc" cpio format, written directly so
//! the runner needs no `cpio` program. An uncompressed archive is fine: the
//! kernel unpacks it as it is, and it is a few megabytes.

/// Builds a newc archive in memory, entry by entry.
#[derive(Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
    ino: u32,
}

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;

impl Archive {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, DIR | 0o755, &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, FILE | mode, data);
    }

    /// The archive with its trailer; the kernel stops reading there.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let name_len = path.len() + 1; // with its NUL
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            u32::try_from(name_len).unwrap_or(u32::MAX),
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header plus name, and data, each end on a 4-byte boundary.
    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_named() {
        let mut a = Archive::default();
        a.dir("bin");
        a.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's header: mode 0100755 and a 10-byte size.
        assert!(text.contains("000081ed"), "{text}");
        assert!(text.contains("0000000a"), "{text}");
    }
}

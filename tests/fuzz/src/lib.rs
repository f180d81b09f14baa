//! What the fuzz targets share: JSON comparison that tolerates float
//! re-parsing, the properties every CNI error must have, a fake daemon
//! socket, a scratch directory and a small runtime.
//!
//! The targets themselves are in `fuzz_targets/`; `docs/fuzzing.md` says what
//! each one asserts and how to run it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use railyard_ipam_plugin::Error;
use serde_json::Value;

/// Equality of two JSON values, with numbers compared as numbers: serde_json
/// (without `float_roundtrip`) may read a printed float back one ulp away, which
/// is not a bug of ours.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || ((x - y).abs() <= 1e-12 * x.abs().max(y.abs())),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// What every error a CNI runtime can see must satisfy: a non-zero code that
/// is not "internal error" (999 is what a panic or a broken invariant
/// becomes), a message, and the field or variable it is about named in it.
pub fn check_cni_error(e: &Error) {
    let msg = e.to_string();
    let code = e.code();
    assert!(code != 0, "error with code 0: {msg}");
    assert!(
        code != railyard_ipam_plugin::error::codes::INTERNAL,
        "internal error reached the runtime: {msg}"
    );
    assert!(!msg.trim().is_empty(), "empty error message: {e:?}");
    match e {
        Error::InvalidConfig { field, .. } => {
            assert!(!field.is_empty(), "invalid config without a field: {msg}");
            assert!(
                msg.contains(&format!("`{field}`")),
                "field not named: {msg}"
            );
        }
        Error::InvalidEnv { name, .. } => {
            assert!(name.starts_with("CNI_"), "not a CNI variable: {msg}");
            assert!(msg.contains(name), "variable not named: {msg}");
        }
        Error::MissingEnv { names, .. } => {
            assert!(!names.is_empty(), "missing nothing: {msg}");
            assert!(names.iter().all(|n| msg.contains(n)), "{msg}");
        }
        Error::UnsupportedField { field, .. } => {
            assert!(!field.is_empty() && msg.contains(field.as_str()), "{msg}");
        }
        Error::IncompatibleVersion { field, .. } => {
            assert!(!field.is_empty() && msg.contains(field.as_str()), "{msg}");
        }
        Error::Decode { what, .. } => {
            assert!(!what.is_empty(), "decode error names no document: {msg}");
        }
        _ => {}
    }
}

/// A directory of this process only, in memory when /dev/shm exists.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // libFuzzer exits without running destructors: clear what runs
        // that are over left behind (their process is gone).
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("railyard-fuzz-") else {
                    continue;
                };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("railyard-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

/// A one-thread runtime for the engine's async calls.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}

/// A fake route-daemon on a unix socket: reads one request line per
/// connection, answers with whatever [`FakeDaemon::answer`] was given, closes.
#[derive(Debug)]
pub struct FakeDaemon {
    pub socket: PathBuf,
    reply: Arc<Mutex<Vec<u8>>>,
    last_request: Arc<Mutex<Vec<u8>>>,
}

impl FakeDaemon {
    pub fn get() -> &'static FakeDaemon {
        static D: OnceLock<FakeDaemon> = OnceLock::new();
        D.get_or_init(|| {
            let socket = scratch().join("ipam.sock");
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).expect("bind the fake daemon");
            let reply = Arc::new(Mutex::new(Vec::new()));
            let last_request = Arc::new(Mutex::new(Vec::new()));
            let (r, l) = (reply.clone(), last_request.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut line = Vec::new();
                    let mut reader = BufReader::new(&mut stream);
                    let _ = reader.read_until(b'\n', &mut line);
                    *l.lock().unwrap() = line;
                    let out = r.lock().unwrap().clone();
                    let _ = stream.write_all(&out);
                }
            });
            FakeDaemon {
                socket,
                reply,
                last_request,
            }
        })
    }

    /// What the next connections are answered with.
    pub fn answer(&self, bytes: &[u8]) {
        *self.reply.lock().unwrap() = bytes.to_vec();
    }

    /// The last request line received (with its newline).
    pub fn last_request(&self) -> Vec<u8> {
        self.last_request.lock().unwrap().clone()
    }
}

/// CRC-32C as the allocation log uses it (route-daemon/allocdb/src/crc.rs is
/// private to its crate): the alloc_log target mends frame checksums with it
/// so that mutations reach the record decoder instead of stopping at a
/// checksum mismatch.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in bytes {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

pub const LOG_MAGIC: &[u8; 8] = b"RYALOG01";

/// Rewrites the checksum of every frame whose length fits, so the frames of
/// a mutated log are read (a frame whose length does not fit stays torn).
pub fn mend_frames(log: &mut [u8]) {
    let mut pos = LOG_MAGIC.len();
    while pos + 8 <= log.len() {
        let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
        if len > log.len() - pos - 8 {
            return;
        }
        let mut covered = log[pos..pos + 4].to_vec();
        covered.extend_from_slice(&log[pos + 8..pos + 8 + len]);
        let sum = crc32c(&covered);
        log[pos + 4..pos + 8].copy_from_slice(&sum.to_le_bytes());
        pos += 8 + len;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
    }
}

#[cfg(test)]
mod seeds;

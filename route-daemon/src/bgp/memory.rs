//! The in-memory [`BirdControl`]: a file and a BIRD that runs what it last
//! read, for the daemon's tests. It passes the same conformance suite as
//! [`super::BirdFile`] on a real BIRD.
//!
//! It cannot parse BIRD's language; it refuses a text whose braces or quotes
//! do not balance or that declares no router id, which is what the suite's
//! refused text gets wrong, and it is never fed anything but the generator's
//! output otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use super::port::{declared_protocols, Applied, BirdControl, BirdError};

/// The file and the BIRD, shared by every port opened on them.
#[derive(Debug, Default)]
struct World {
    file: Option<String>,
    /// What BIRD runs; `None` while it is down.
    running: Option<String>,
    down: bool,
    reloads: u64,
    beat: Option<SystemTime>,
}

#[derive(Debug)]
pub struct MemoryBird {
    world: Arc<Mutex<World>>,
    /// As [`super::BirdFile`]'s: true until a reload of this port went through.
    pending: AtomicBool,
}

impl Default for MemoryBird {
    fn default() -> Self {
        MemoryBird::new("")
    }
}

impl MemoryBird {
    /// A BIRD running `initial`, read from its file.
    pub fn new(initial: &str) -> Self {
        MemoryBird {
            world: Arc::new(Mutex::new(World {
                file: Some(initial.to_owned()),
                running: Some(initial.to_owned()),
                ..World::default()
            })),
            pending: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// BIRD stops (killed, crashed).
    pub fn stop(&self) {
        let mut s = self.lock();
        s.down = true;
        s.running = None;
    }

    /// BIRD starts and reads its file.
    pub fn start(&self) {
        let mut s = self.lock();
        s.down = false;
        s.running = s.file.clone();
    }

    /// The same file and BIRD, seen by a fresh port (a restarted daemon).
    pub fn reopen(&self) -> Self {
        MemoryBird {
            world: Arc::clone(&self.world),
            pending: AtomicBool::new(true),
        }
    }

    /// What the file holds now.
    pub fn file(&self) -> Option<String> {
        self.lock().file.clone()
    }

    /// How many reloads went through, through any port.
    pub fn reloads(&self) -> u64 {
        self.lock().reloads
    }
}

fn parses(text: &str) -> Result<(), BirdError> {
    // Comments (`#` to the end of the line) may hold anything.
    let code: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let opens = code.matches('{').count();
    let closes = code.matches('}').count();
    let quotes = code.matches('"').count() + code.matches('\'').count();
    if opens != closes || quotes % 2 != 0 || !code.contains("router id") {
        return Err(BirdError::Refused(
            "unbalanced braces or quotes, or no router id".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl BirdControl for MemoryBird {
    async fn apply(&self, text: &str) -> Result<Applied, BirdError> {
        let mut s = self.lock();
        let same = s.file.as_deref() == Some(text);
        if same && !self.pending.load(Ordering::SeqCst) {
            return Ok(Applied::Unchanged);
        }
        if !same {
            parses(text)?;
            s.file = Some(text.to_owned());
        }
        self.pending.store(true, Ordering::SeqCst);
        if s.down {
            return Err(BirdError::Unreachable("no BIRD on the socket".into()));
        }
        s.running = Some(text.to_owned());
        self.pending.store(false, Ordering::SeqCst);
        s.reloads += 1;
        Ok(Applied::Reloaded)
    }

    async fn protocols(&self) -> Result<Vec<String>, BirdError> {
        let s = self.lock();
        match &s.running {
            Some(text) => Ok(declared_protocols(text)),
            None => Err(BirdError::Unreachable("no BIRD on the socket".into())),
        }
    }

    async fn beat(&self) -> Result<(), BirdError> {
        self.lock().beat = Some(SystemTime::now());
        Ok(())
    }

    async fn last_beat(&self) -> Result<Option<SystemTime>, BirdError> {
        Ok(self.lock().beat)
    }
}

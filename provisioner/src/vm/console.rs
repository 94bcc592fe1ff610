//! A KVM machine's console for the panel: its 16550 serial port. Output is followed in the
//! serial log the VMM writes (the VMM opens no new files after lockdown, so the log is the
//! stream); input goes through the control socket's `input <hex>` verb into the UART's
//! receive FIFO. The session ends when the VMM does.

use super::control;
use super::runtime::{vmm_alive, VmFacts};
use crate::runtime::ConsoleInput;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of the log a new viewer sees first (the last prompt, the last messages).
const BACKLOG: u64 = 4096;
/// How often the log is looked at for new output.
const POLL: Duration = Duration::from_millis(50);

/// Follows `serial.log` from `BACKLOG` bytes before its end. A rotation (the VMM moved the
/// log to `serial.log.1` and started it empty) is seen as the file getting shorter: reading
/// starts again at 0 (output written between the last look and the rotation is in
/// `serial.log.1`, not shown).
pub struct SerialFollower {
    path: PathBuf,
    file: File,
    pos: u64,
    facts: VmFacts,
    last_alive_check: Instant,
    /// Set when the input side is dropped (the viewer left).
    stop: Arc<AtomicBool>,
}

impl SerialFollower {
    /// The follower and the input side that stops it when dropped.
    pub fn open(path: PathBuf, facts: VmFacts, socket: PathBuf) -> std::io::Result<(Self, SerialInput)> {
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        let stop = Arc::new(AtomicBool::new(false));
        let input = SerialInput { socket, stop: stop.clone() };
        Ok((SerialFollower { path, file, pos: len.saturating_sub(BACKLOG), facts, last_alive_check: Instant::now(), stop }, input))
    }
}

impl Read for SerialFollower {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            let len = self.file.metadata()?.len();
            if len < self.pos {
                self.pos = 0;
            }
            if len > self.pos {
                self.file.seek(SeekFrom::Start(self.pos))?;
                let want = buf.len().min((len - self.pos) as usize);
                let n = self.file.read(&mut buf[..want])?;
                self.pos += n as u64;
                if n > 0 {
                    return Ok(n);
                }
            }
            if self.last_alive_check.elapsed() > Duration::from_millis(500) {
                self.last_alive_check = Instant::now();
                if !vmm_alive(&self.facts) {
                    tracing::debug!(log = %self.path.display(), "console: the machine is gone");
                    return Ok(0);
                }
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Keystrokes into the machine's UART, through its control socket, at most its 64-byte FIFO
/// per request; a full FIFO (the guest is not reading) is retried for up to 5 s.
pub struct SerialInput {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Drop for SerialInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ConsoleInput for SerialInput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut rest = bytes;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(64)];
            let reply = control::request(&self.socket, &format!("input {}", hex::encode(chunk)), Duration::from_secs(5))?;
            let taken = if reply.starts_with("ok") {
                chunk.len()
            } else {
                // "err console input full: took N of M bytes"
                let n = reply.split("took ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse::<usize>().ok());
                match n {
                    Some(n) => n.min(chunk.len()),
                    None => return Err(std::io::Error::other(format!("console input refused: {reply}"))),
                }
            };
            rest = &rest[taken..];
            if taken < chunk.len() {
                if Instant::now() > deadline {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the machine does not read its serial port"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

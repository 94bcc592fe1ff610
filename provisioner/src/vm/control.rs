//! The control socket of a running VMM: how the provisioner pauses, resumes and asks a machine
//! to shut down without sharing memory with it.
//!
//! A unix stream socket in the instance's directory; one text command per connection, one
//! line back (`ok <state>` or `err <reason>`):
//! * `status`: `ok running` or `ok paused`
//! * `pause`: stops every vCPU (kicked out of KVM_RUN and parked); guest memory stays as is.
//!   This is how a suspended KVM VPS is frozen.
//! * `resume`: lets them run again.
//! * `shutdown`: a Ctrl-Alt-Del on the i8042, the guest's cue to power off cleanly.
//! * `input <hex>`: bytes (hex-encoded, at most the UART's 64-byte FIFO at a time) into the
//!   serial port's receive path, as if typed on its console; `err` with how many were taken
//!   when the FIFO is full (the caller retries the rest). A browser console relays here.
//! * `seccomp`: `ok filter` or `ok off`: the kernel's own word (`PR_GET_SECCOMP`) on whether the
//!   thread answering runs under the filter.
//!
//! **Lockdown happens before serving.** The socket is bound during setup (the filter forbids
//! making it later), but [`serve`] answers nothing until the VMM's main thread says the filter
//! is installed on every thread ([`Lockdown`]); connections made earlier wait in the backlog.
//! As a second line, every request is refused (`err not locked down`) if the kernel says the
//! answering thread is not in filter mode while the configuration asks for one.

use super::devices::Devices;
use super::vcpu::PauseGate;
use super::vmm::VmmError;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub fn bind(path: &Path) -> Result<UnixListener, VmmError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|source| VmmError::File { path: path.into(), source })
}

/// What the control thread acts on.
pub struct Control {
    pub gate: Arc<PauseGate>,
    pub threads: Vec<libc::pthread_t>,
    pub devices: Arc<Mutex<Devices>>,
    /// The configuration asks for the seccomp filter: refuse to serve outside it.
    pub require_filter: bool,
}

/// The main thread's word that set-up is over: `Sealed` once the seccomp filter is on every
/// thread (or `Unconfined` when the configuration turns it off, for tests). A dropped sender
/// (set-up failed) means the control thread never serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockdown {
    Sealed,
    Unconfined,
}

/// `SECCOMP_MODE_FILTER`, as `PR_GET_SECCOMP` reports it.
const SECCOMP_MODE_FILTER: libc::c_int = 2;

/// The calling thread's seccomp mode, from the kernel (0 off, 2 filter). The filter allows
/// exactly this `prctl` (see `seccomp::ALLOWED_PRCTL`).
pub fn seccomp_mode() -> libc::c_int {
    // SAFETY: PR_GET_SECCOMP takes no pointers and only reads the calling thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) }
}

impl Control {
    fn state(&self) -> &'static str {
        if self.gate.paused.load(Ordering::SeqCst) {
            "paused"
        } else {
            "running"
        }
    }

    fn pause(&self) -> Result<(), String> {
        self.gate.pause_all(&self.threads)
    }

    fn input(&self, hex: &str) -> Result<(), String> {
        let bytes = hex::decode(hex.trim()).map_err(|e| format!("input is not hex: {e}"))?;
        let taken = self.devices.lock().unwrap_or_else(|p| p.into_inner()).serial_input(&bytes);
        if taken < bytes.len() {
            return Err(format!("console input full: took {taken} of {} bytes", bytes.len()));
        }
        Ok(())
    }

    fn handle(&self, cmd: &str) -> String {
        let r = match cmd {
            "status" => Ok(()),
            "pause" => self.pause(),
            "resume" => {
                self.gate.resume();
                Ok(())
            }
            c if c.starts_with("input ") => self.input(&c["input ".len()..]),
            "shutdown" => {
                self.devices.lock().unwrap_or_else(|p| p.into_inner()).i8042.send_ctrl_alt_del();
                Ok(())
            }
            // VM exits so far, by reason and device (a profile of the boot; see vcpu::EXITS).
            "exits" => return format!("ok {}\n", super::vcpu::EXITS.summary()),
            "seccomp" => {
                return if seccomp_mode() == SECCOMP_MODE_FILTER { "ok filter\n".into() } else { "ok off\n".into() };
            }
            // For the isolation test only, and only in builds with test hooks (never in a
            // release package): do what the filter forbids (open a file).
            #[cfg(feature = "test-hooks")]
            "debug-forbidden-syscall" => {
                let _ = std::fs::File::open("/etc/hostname");
                Err("the forbidden system call was allowed".into())
            }
            other => Err(format!("unknown command {other:?}")),
        };
        match r {
            Ok(()) => format!("ok {}\n", self.state()),
            Err(e) => format!("err {e}\n"),
        }
    }
}

/// Waits for the main thread's [`Lockdown`], then serves commands until the process ends.
pub fn serve(listener: UnixListener, ctl: Control, lockdown: mpsc::Receiver<Lockdown>) {
    match lockdown.recv() {
        Ok(l) => tracing::debug!(lockdown = ?l, "control socket serving"),
        Err(_) => return,
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let mut line = String::new();
        let mut reader = BufReader::new(&conn);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let reply = if ctl.require_filter && seccomp_mode() != SECCOMP_MODE_FILTER {
            "err not locked down\n".to_string()
        } else {
            ctl.handle(line.trim())
        };
        let _ = (&conn).write_all(reply.as_bytes());
    }
}

/// Client side (the provisioner): sends one command, returns the reply line.
pub fn request(path: &Path, cmd: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

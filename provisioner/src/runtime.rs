//! The lifecycle contract each kind of instance implements, so the store, restart adoption
//! and (later) the HTTP API are written once for both containers and KVM machines.
//!
//! Every method is idempotent and keyed by the instance id: calling it again after a crash,
//! or for a state the instance is already in, succeeds and changes nothing more.

use crate::store::InstanceRecord;
use vessel_core::{InstanceKind, InstanceState, PasswordHash, PlanResources};

/// Shared with the panel (it is on the wire), so it lives in core.
pub use vessel_core::Usage;

/// One kind's lifecycle. `record` is the store's record; a method may update
/// `record.runtime` (its own facts) and the caller persists it.
pub trait Runtime {
    /// `From<NotSupported>`: an operation a kind does not implement yet is a typed refusal.
    type Error: std::error::Error + Send + Sync + 'static + From<NotSupported>;

    /// Builds the instance (disk, root filesystem, cgroup, network) without starting it.
    fn create(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn start(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// Graceful, then forced after the runtime's timeout.
    fn stop(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn suspend(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    fn resume(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// Removes every trace: nothing left of it on the host afterwards.
    fn destroy(&self, record: &mut InstanceRecord) -> Result<(), Self::Error>;
    /// What the kernel says it is now (used by adoption after a restart and by listing).
    fn observe(&self, record: &InstanceRecord) -> Result<InstanceState, Self::Error>;
    fn usage(&self, record: &InstanceRecord) -> Result<Usage, Self::Error>;
    /// The host-side name of the instance's network port (a container's veth end, a
    /// machine's TAP), where [`crate::hostnet`] puts its guards and its firewall.
    fn port_name(&self, record: &InstanceRecord) -> String;
    /// Stop (graceful, then forced) and start again. A kind with a cheaper way may override it.
    fn reboot(&self, record: &mut InstanceRecord) -> Result<(), Self::Error> {
        self.stop(record)?;
        self.start(record)
    }

    /// Refuses an unknown `template` before anything is made or changed (create, reinstall):
    /// the caller's mistake, not a failure. By default the kind finds out in `create`.
    fn check_template(&self, _template: &str) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Refuses, before anything changes, a resize this kind cannot do from `current` to
    /// `new` (both of this kind; admission is the service's).
    fn check_resize(&self, _current: &PlanResources, _new: &PlanResources) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A new root filesystem from `record.spec.template`, with `record.spec.access` written
    /// into it; the same identity, disk image and addresses, running again if it should run.
    /// The spec already holds the new template and access and `record.pending` says
    /// `Reinstall`. On failure a kind either leaves `pending` set (the next request or a
    /// restart finishes it) or puts `previous_template` back, clears `pending` and returns the
    /// error (the instance stays usable on its old system).
    ///
    /// By default: stop, create again, start if it should run; on failure back to
    /// `previous_template` the same way.
    fn reinstall(&self, record: &mut InstanceRecord, previous_template: &str) -> Result<(), Self::Error> {
        if let Err(e) = rebuild(self, record) {
            tracing::warn!(id = %record.spec.id, error = %e, "reinstall failed: keeping the previous template");
            record.spec.template = previous_template.to_string();
            let _ = rebuild(self, record);
            record.pending = None;
            return Err(e);
        }
        Ok(())
    }

    /// Applies `record.spec.resources` (already the new ones; `previous` the old). By
    /// default: stop, create again, start if it should run.
    fn resize(&self, record: &mut InstanceRecord, _previous: &PlanResources) -> Result<(), Self::Error> {
        rebuild(self, record)
    }

    /// Sets root's password in the running guest to `hash`. The default answers
    /// [`NotSupported`]: containers change it in place, KVM machines offline (a restart).
    fn reset_password(&self, record: &mut InstanceRecord, _hash: &PasswordHash) -> Result<(), Self::Error> {
        Err(NotSupported { op: "reset_password", kind: record.spec.kind() }.into())
    }

    /// Can this kind boot `record` into its rescue system (and back)? The service then sets
    /// `record.rescue` and reboots: the kind's `start` boots the rescue system while
    /// `record.rescue` is set, its own otherwise. The default answers [`NotSupported`].
    fn check_rescue(&self, record: &InstanceRecord) -> Result<(), Self::Error> {
        Err(NotSupported { op: "rescue", kind: record.spec.kind() }.into())
    }

    /// Attaches a console to the running instance (a container: a login on a fresh pty of its
    /// own; a KVM machine: its serial port). Dropping the [`Console`] detaches it and leaves
    /// nothing running behind.
    fn console(&self, record: &InstanceRecord) -> Result<Console, Self::Error> {
        Err(NotSupported { op: "console", kind: record.spec.kind() }.into())
    }
}

/// An attached console. `output` blocks until the guest prints (`Ok(0)`: the console ended,
/// e.g. the login exited or the machine stopped); `input` types into it. Read and written from
/// two threads; dropping both ends the session.
pub struct Console {
    pub output: Box<dyn std::io::Read + Send>,
    pub input: Box<dyn ConsoleInput>,
}

/// The typing side of a [`Console`].
pub trait ConsoleInput: Send {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// The viewer's terminal size; a serial line has none, so by default nothing happens.
    fn resize(&mut self, _cols: u16, _rows: u16) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stop, create again (the kind re-checks image and admission), start again if it should
/// run: how a kind without its own steps applies a reinstall or a resize.
fn rebuild<R: Runtime + ?Sized>(rt: &R, record: &mut InstanceRecord) -> Result<(), R::Error> {
    rt.stop(record)?;
    rt.create(record)?;
    if record.should_run {
        rt.start(record)?;
    }
    Ok(())
}

/// An operation this kind of instance cannot do yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{op} is not supported by the {kind:?} runtime yet")]
pub struct NotSupported {
    pub op: &'static str,
    pub kind: InstanceKind,
}

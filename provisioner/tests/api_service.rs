//! The service without HTTP: resize and reinstall on a running machine, and start-up
//! finishing operations a crash interrupted (create, destroy, resize) from their `pending`
//! markers.

mod api_support;

use api_support::*;
use provisioner::config::DaemonConfig;
use provisioner::daemon::build_service_with;
use provisioner::service::{Service, ServiceError};
use provisioner::store::PendingOp;
use provisioner::vm::cgroup;
use std::sync::Arc;
use vessel_core::{HostAction, InstanceState};

/// A service over the harness's scratch host (its daemon stopped: only the service acts).
fn service(d: &mut Daemon) -> Arc<Service> {
    d.kill9();
    let cfg = DaemonConfig::load(Some(&d.config_path)).unwrap();
    build_service_with(&cfg, BIN.into()).unwrap()
}

fn limit_mib(d: &Daemon, id: &vessel_core::InstanceId) -> u64 {
    cgroup::memory_limit(&d.cgroup_parent, &id.to_string()).unwrap() >> 20
}

#[tokio::test(flavor = "multi_thread")]
async fn resize_and_reinstall_apply_to_a_running_machine() {
    require_kvm();
    let mut d = Daemon::start(Options::default());
    let s = service(&mut d);
    let a = spec(kvm_plan(1, 64, 2.0));
    s.create(a.clone()).await.unwrap();
    s.act(a.id, HostAction::Start).await.unwrap();
    assert_eq!(limit_mib(&d, &a.id), 64 + 64);

    let resize = HostAction::Resize { resources: kvm_plan(1, 256, 2.0) };
    let st = s.act(a.id, resize).await.unwrap().unwrap();
    assert_eq!(st.state, InstanceState::Running);
    assert_eq!(st.resources.memory_burst_mib(), 256);
    assert_eq!(limit_mib(&d, &a.id), 256 + 64, "the new size is what runs");
    assert!(d.store().get(&a.id).unwrap().unwrap().pending.is_none());

    // Too big for the host: refused, nothing changes.
    let huge = HostAction::Resize { resources: kvm_plan(1, 2048, 2.0) };
    assert!(matches!(s.act(a.id, huge).await, Err(ServiceError::Refused(_))));
    assert_eq!(limit_mib(&d, &a.id), 256 + 64);

    // Reinstall with a template that does not exist: refused before any side effect (the
    // kind's `check_template`), the machine runs on the old one.
    let bad = HostAction::Reinstall { template: Some("no-such-template".into()), access: Default::default() };
    let e = s.act(a.id, bad).await.unwrap_err();
    assert!(matches!(e, ServiceError::Invalid(_)), "{e}");
    let st = s.status(a.id).await.unwrap();
    assert_eq!((st.state, st.template.as_str()), (InstanceState::Running, "vessel-test-guest"));
    assert!(st.pending.is_none());
    // Reinstall with the same template: a fresh boot.
    let pid = d.pid_of(&a.id).unwrap();
    let st = s.act(a.id, HostAction::Reinstall { template: None, access: Default::default() }).await.unwrap().unwrap();
    assert_eq!(st.state, InstanceState::Running);
    assert_ne!(d.pid_of(&a.id).unwrap(), pid, "a new VMM");

    // A password reset on a KVM machine writes its disk offline (vm_access.rs); this test
    // guest has no disk, so it is refused as not supported, changing nothing.
    let hash = vessel_core::PasswordHash::parse("$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEF").unwrap();
    let e = s.act(a.id, HostAction::ResetPassword { root_password_hash: hash.clone() }).await.unwrap_err();
    assert!(matches!(e, ServiceError::Runtime { .. }) && e.to_string().contains("not supported by the Kvm runtime yet"), "{e}");
    assert!(s.status(a.id).await.unwrap().pending.is_none());
    s.act(a.id, HostAction::Stop).await.unwrap();
    let e = s.act(a.id, HostAction::ResetPassword { root_password_hash: hash }).await.unwrap_err();
    assert!(matches!(e, ServiceError::NotAllowed { state: InstanceState::Stopped, .. }), "{e}");
    s.destroy(a.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_finishes_interrupted_create_destroy_and_resize() {
    require_kvm();
    let mut d = Daemon::start(Options::default());
    let s = service(&mut d);
    let store = d.store();

    // A create interrupted right after its record was written.
    let a = spec(kvm_plan(1, 64, 2.0));
    let rec = |spec: vessel_core::InstanceSpec, pending| provisioner::store::InstanceRecord {
        spec,
        state: InstanceState::Creating,
        should_run: false,
        pending: Some(pending),
        runtime: Default::default(),
        rescue: None,
    };
    store.put(&rec(a.clone(), PendingOp::Create)).unwrap();

    // A destroy interrupted after its marker, with the machine still running.
    let b = spec(kvm_plan(1, 64, 2.0));
    s.create(b.clone()).await.unwrap();
    s.act(b.id, HostAction::Start).await.unwrap();
    let b_pid = d.pid_of(&b.id).unwrap();
    let mut rb = store.get(&b.id).unwrap().unwrap();
    rb.pending = Some(PendingOp::Destroy);
    rb.state = InstanceState::Destroying;
    store.put(&rb).unwrap();

    // A resize interrupted after the new size was recorded, before it was applied.
    let c = spec(kvm_plan(1, 64, 2.0));
    s.create(c.clone()).await.unwrap();
    s.act(c.id, HostAction::Start).await.unwrap();
    let mut rc = store.get(&c.id).unwrap().unwrap();
    rc.pending = Some(PendingOp::Resize { previous: rc.spec.resources.clone() });
    rc.spec.resources = kvm_plan(1, 128, 2.0);
    store.put(&rc).unwrap();
    assert_eq!(limit_mib(&d, &c.id), 64 + 64);

    // A restarted provisioner.
    drop(s);
    let cfg = DaemonConfig::load(Some(&d.config_path)).unwrap();
    let s = build_service_with(&cfg, BIN.into()).unwrap();
    let adopt = s.clone();
    let adopted = tokio::task::spawn_blocking(move || adopt.adopt()).await.unwrap().unwrap();

    let ra = store.get(&a.id).unwrap().unwrap();
    assert_eq!((ra.state, ra.pending), (InstanceState::Stopped, None), "the create was finished");
    assert!(d.kvm().dir(&a.id).exists());
    assert!(store.get(&b.id).unwrap().is_none(), "the destroy was finished");
    assert!(
        std::fs::metadata(format!("/proc/{b_pid}")).is_err()
            || std::fs::read_to_string(format!("/proc/{b_pid}/stat")).unwrap().contains(") Z ")
    );
    let rc = store.get(&c.id).unwrap().unwrap();
    assert_eq!((rc.state, rc.pending), (InstanceState::Running, None), "the resize was applied");
    assert_eq!(limit_mib(&d, &c.id), 128 + 64);
    assert_eq!(adopted.len(), 2, "{adopted:?}");
    s.destroy(a.id).await.unwrap();
    s.destroy(c.id).await.unwrap();
}

//! Kill -9 (abort) the provisioner at every step of create and destroy, run the reconcile a
//! restarted provisioner runs, and check the instance ends running or the host ends clean,
//! never half-made.

mod ct_support;

use ct_support::TestHost;
use provisioner::container::{CREATE_STEPS, DESTROY_STEPS};
use std::time::{Duration, Instant};
use vessel_core::InstanceState;

#[test]
fn a_crash_at_any_step_is_finished_or_undone() {
    let t = TestHost::new(163, 1, TestHost::big());
    let started = Instant::now();
    let budget = Duration::from_secs(150);
    let mut checked = 0;
    let steps: Vec<(&str, &str)> =
        CREATE_STEPS.iter().map(|s| ("create", *s)).chain(DESTROY_STEPS.iter().map(|s| ("destroy", *s))).collect();
    for (op, step) in steps {
        assert!(started.elapsed() < budget, "crash loop over its time budget after {checked} steps");
        let spec = t.spec(|_| {});
        let id = spec.id;
        let path = t.state.path().join("spec.json");
        std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
        if op == "destroy" {
            let o = t.cli().arg("create").arg("--spec").arg(&path).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let mut cmd = t.cli();
        if op == "create" {
            cmd.arg("create").arg("--spec").arg(&path);
        } else {
            cmd.arg("destroy").arg(id.to_string());
        }
        let o = cmd.env("VESSEL_CRASH_AT", format!("{op}:{step}")).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{op}:{step} did not crash: {}", String::from_utf8_lossy(&o.stderr));

        // The restarted provisioner.
        let r = t.cli().arg("reconcile").output().unwrap();
        assert!(r.status.success(), "reconcile after {op}:{step}: {}", String::from_utf8_lossy(&r.stderr));
        if let Some(rec) = t.host.store.get(&id).unwrap() {
            {
                assert_eq!(op, "create", "destroy:{step} left a record");
                assert_eq!(t.host.list().unwrap().iter().find(|(r, _)| r.spec.id == id).unwrap().1, InstanceState::Running, "{op}:{step}");
                assert!(rec.pending.is_none());
                assert_eq!(t.sh_ok(&id, "hostname").trim(), spec.hostname.as_str());
                t.host.destroy(&id).unwrap();
            }
        }
        assert_eq!(t.leftovers(&id), Vec::<String>::new(), "after {op}:{step}");
        checked += 1;
    }
    assert_eq!(checked, CREATE_STEPS.len() + DESTROY_STEPS.len());
}

#[test]
fn orphans_without_a_record_are_swept() {
    let t = TestHost::new(163, 2, TestHost::big());
    let spec = t.spec(|_| {});
    let id = spec.id;
    t.host.create(spec, true).unwrap();
    // The record vanishes (an admin's rm, a lost disk): everything else is an orphan now.
    std::fs::remove_file(t.state.path().join("instances").join(format!("{id}.json"))).unwrap();
    let rep = t.host.reconcile().unwrap();
    assert!(!rep.orphans_removed.is_empty());
    assert_eq!(t.leftovers(&id), Vec::<String>::new());
}

/// A reinstall killed half-way (after the old root filesystem is gone, or before its cgroup is
/// back) is finished by the reconcile: running, fresh root, same identity.
#[test]
fn a_crashed_reinstall_is_finished() {
    let t = TestHost::new(163, 3, TestHost::big());
    for step in ["rootfs", "cgroup"] {
        let spec = t.spec(|_| {});
        let id = spec.id;
        t.host.create(spec.clone(), true).unwrap();
        t.sh_ok(&id, "echo old > /root/old");
        let o = t.cli().arg("reinstall").arg(id.to_string()).env("VESSEL_CRASH_AT", format!("reinstall:{step}")).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(o.status.signal(), Some(libc::SIGABRT), "reinstall:{step} did not crash");
        let r = t.cli().arg("reconcile").output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let rec = t.host.store.get(&id).unwrap().unwrap();
        assert!(rec.pending.is_none(), "reinstall:{step} left {:?}", rec.pending);
        assert_eq!(t.host.list().unwrap().iter().find(|(r, _)| r.spec.id == id).unwrap().1, InstanceState::Running);
        assert!(!t.sh(&id, "test -e /root/old").status.success(), "old root survived reinstall:{step}");
        assert_eq!(t.sh_ok(&id, "hostname").trim(), spec.hostname.as_str());
        t.host.destroy(&id).unwrap();
        assert_eq!(t.leftovers(&id), Vec::<String>::new());
    }
}

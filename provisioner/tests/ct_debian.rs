//! The `debian-12` template (issue 11): a real Debian with systemd as pid 1, journald and
//! OpenSSH, in a container on the real kernel, as root. The template is built once per machine
//! by `scripts/build-template-debian-12.sh` (cached outside the repository).

mod ct_support;

use ct_support::TestHost;
use std::time::{Duration, Instant};
use vessel_core::InstanceId;

/// Waits (bounded) for `systemctl is-system-running` to settle and returns its answer.
fn system_state(t: &TestHost, id: &InstanceId, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let o = t.sh(id, "systemctl is-system-running");
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !matches!(state.as_str(), "initializing" | "starting" | "") || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// systemd boots as pid 1 inside its own cgroup tree and reaches `running` (nothing failed),
/// with journald and sshd on port 22; its SSH host keys are made on first boot (none ship in
/// the template); a stop is a clean systemd halt (well within the stop timeout, not a kill);
/// it boots again; destroy leaves nothing, including the groups systemd made.
#[test]
fn debian_12_boots_systemd_runs_sshd_and_halts_cleanly() {
    ct_support::debian_template();
    // A long stop timeout: a stop that ends sooner ended by itself, not by SIGKILL.
    let t = TestHost::with_stop_timeout(170, 1, TestHost::big(), Duration::from_secs(40));
    let mut a = t.spec(|r| {
        r.memory_burst_mib = 512;
        r.memory_guaranteed_mib = Some(256);
        r.pids_max = Some(512);
        r.disk_gib = 2;
    });
    a.template = "debian-12".into();
    let t0 = Instant::now();
    t.host.create(a.clone(), true).unwrap();
    let created = t0.elapsed();
    let state = system_state(&t, &a.id, Duration::from_secs(60));
    let booted = t0.elapsed();
    let failed = t.sh_ok(&a.id, "systemctl --failed --no-legend --plain --no-pager");
    assert_eq!(state, "running", "is-system-running; failed units:\n{failed}");
    eprintln!("debian-12: created in {created:?}, running after {booted:?}");

    let mut broken = Vec::new();
    let comm = t.sh_ok(&a.id, "cat /proc/1/comm");
    if comm.trim() != "systemd" {
        broken.push(format!("pid 1 is {comm:?}"));
    }
    for unit in ["systemd-journald", "ssh", "dbus"] {
        let s = t.sh(&a.id, &format!("systemctl is-active {unit}"));
        let s = String::from_utf8_lossy(&s.stdout).trim().to_string();
        if s != "active" {
            broken.push(format!("{unit} is {s}"));
        }
    }
    let listen = t.sh_ok(&a.id, "ss -Htln");
    if !listen.lines().any(|l| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(":22"))) {
        broken.push(format!("nothing listens on port 22:\n{listen}"));
    }
    // journald took messages (sshd's start, among others).
    let journal = t.sh_ok(&a.id, "journalctl -b --no-pager -u ssh");
    if !journal.contains("Server listening") {
        broken.push(format!("sshd's start is not in the journal:\n{journal}"));
    }
    // Its own cgroup tree, as systemd laid it out; the host's stays out of view.
    let cg = t.sh_ok(&a.id, "cat /proc/1/cgroup; ls /sys/fs/cgroup");
    if !cg.contains("0::/init.scope") || !cg.contains("system.slice") {
        broken.push(format!("systemd's cgroup tree is not its own:\n{cg}"));
    }
    if cg.contains("vessel-test") {
        broken.push(format!("host cgroup paths visible:\n{cg}"));
    }
    let keys = t.sh_ok(&a.id, "ls /etc/ssh/");
    if !keys.contains("ssh_host_ed25519_key") {
        broken.push(format!("no SSH host key made on first boot:\n{keys}"));
    }
    let tar = std::process::Command::new("tar").arg("-tf").arg(ct_support::templates().join("debian-12.tar")).output().unwrap();
    if String::from_utf8_lossy(&tar.stdout).contains("ssh_host_") {
        broken.push("the template ships SSH host keys (every container would share them)".into());
    }
    let machine_id = t.sh_ok(&a.id, "cat /etc/machine-id");
    if machine_id.trim().len() != 32 {
        broken.push(format!("machine-id {machine_id:?}"));
    }
    assert!(broken.is_empty(), "{broken:#?}");

    let t1 = Instant::now();
    t.host.stop(&a.id).unwrap();
    let stopped = t1.elapsed();
    eprintln!("debian-12: stopped in {stopped:?}");
    assert!(stopped < Duration::from_secs(20), "stop took {stopped:?}: systemd did not halt on SIGRTMIN+3 (killed at the 40 s timeout)");

    t.host.start(&a.id).unwrap();
    let state = system_state(&t, &a.id, Duration::from_secs(60));
    assert_eq!(state, "running", "after a stop and start");

    t.host.destroy(&a.id).unwrap();
    let left = t.leftovers(&a.id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

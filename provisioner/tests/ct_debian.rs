//! The `debian-12` template (issue 11): a real Debian with systemd as pid 1, journald and
//! OpenSSH, in a container on the real kernel, as root. The template is built once per machine
//! by `scripts/build-template-debian-12.sh` (cached outside the repository).

mod ct_support;

use ct_support::{Internet, TestHost};
use std::time::{Duration, Instant};
use vessel_core::InstanceId;

/// Waits (bounded) for `systemctl is-system-running` to settle and returns its answer.
fn system_state(t: &TestHost, id: &InstanceId, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let o = t.sh(id, "systemctl is-system-running");
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        // "offline": systemctl could not reach systemd's bus yet (early boot); still coming up.
        if !matches!(state.as_str(), "initializing" | "starting" | "offline" | "") || Instant::now() > deadline {
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

fn run_ok(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny package of our own: `vessel-hello` printing a greeting.
fn tiny_deb(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: vessel-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Vessel tests <tests@example.com>\nDescription: greets\n",
    )
    .unwrap();
    let bin = root.join("usr/bin/vessel-hello");
    std::fs::write(&bin, "#!/bin/sh\necho hello from a package\n").unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let deb = dir.join("vessel-hello_1.0_all.deb");
    run_ok(std::process::Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&root).arg(&deb));
    deb
}

/// Issue 11's customer: from another network namespace playing the Internet, through the
/// host, SSH into a `debian-12` container with the key it was ordered with; `systemctl start`
/// a unit, `sudo -u nobody id`, `apt-get install` a local .deb, and `free -m` shows the plan's
/// memory (its burst ceiling, from LXCFS), `nproc` its vCPUs. The root password chosen at
/// order works too.
#[test]
fn a_customer_logs_in_over_ssh_and_uses_debian() {
    ct_support::debian_template();
    ct_support::ensure_lxcfs();
    let sfx = ct_support::rand_suffix();
    let inet = Internet::beside_a_private_host(&sfx);
    // The host routes between its uplink and the containers' bridge (it turns forwarding on).
    let t = TestHost::with_options(170, 2, TestHost::big(), Duration::from_secs(20), true);

    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    run_ok(std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "customer@laptop", "-f"]).arg(&key));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let password = "a long root password 7";
    let hash = sha_crypt::sha512_simple(password, &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();

    let mut a = t.spec(|r| {
        r.memory_burst_mib = 512;
        r.memory_guaranteed_mib = Some(256);
        r.pids_max = Some(512);
        r.disk_gib = 2;
    });
    a.template = "debian-12".into();
    a.access = vessel_core::Access::new(
        vec![vessel_core::SshPublicKey::parse(public.trim()).unwrap()],
        Some(vessel_core::PasswordHash::parse(&hash).unwrap()),
    )
    .unwrap();
    let addr = a.network.ipv4.as_ref().unwrap().address.to_string();
    let t0 = Instant::now();
    t.host.create(a.clone(), true).unwrap();

    // SSH answering: the first successful login with the key (bounded).
    let key_s = key.to_str().unwrap();
    let with_key = ["-i", key_s, "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no"];
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        let o = inet.ssh(&with_key, &addr, "id -u; systemctl is-system-running --wait", None, &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if out.starts_with("0\n") {
            break out;
        }
        assert!(Instant::now() < deadline, "no SSH login within 90 s: {out} {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("debian-12: SSH login from the Internet namespace {:?} after create", t0.elapsed());
    assert_eq!(first.lines().nth(1), Some("running"), "{first}");

    let sh = |cmd: &str| {
        let o = inet.ssh(&with_key, &addr, cmd, None, &[]);
        assert!(
            o.status.success(),
            "{cmd}: {:?}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let unit = sh("printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/sh -c \"echo started by systemd > /run/vessel-hello\"\\n' > /etc/systemd/system/vessel-hello.service \
         && systemctl daemon-reload && systemctl start vessel-hello && systemctl is-active vessel-hello && cat /run/vessel-hello");
    assert_eq!(unit, "active\nstarted by systemd\n");
    let nobody = sh("sudo -u nobody id");
    assert!(nobody.starts_with("uid=65534(nobody) gid=65534(nogroup)"), "{nobody}");

    let deb = tiny_deb(keys.path());
    let o = inet.ssh(&with_key, &addr, "cat > /root/vessel-hello_1.0_all.deb", Some(&deb), &[]);
    assert!(o.status.success(), "copy the .deb: {}", String::from_utf8_lossy(&o.stderr));
    let installed = sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/vessel-hello_1.0_all.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }; vessel-hello; dpkg-query -W -f '${Status}\\n' vessel-hello");
    assert_eq!(installed, "hello from a package\ninstall ok installed\n");

    let free = sh("free -m");
    let total: u64 = free.lines().find(|l| l.starts_with("Mem:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    assert_eq!(total, 512, "free -m inside a 512 MiB plan:\n{free}");
    // The plan's one vCPU (coreutils' nproc: the affinity; /proc/cpuinfo: LXCFS, the cpuset).
    assert_eq!(sh("nproc; grep -c ^processor /proc/cpuinfo"), "1\n1\n");

    // The root password chosen at order (sshd allows root passwords: vessel.conf).
    let askpass = keys.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let by_password = [
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "NumberOfPasswordPrompts=1",
    ];
    let env = [("SSH_ASKPASS", askpass.to_str().unwrap()), ("SSH_ASKPASS_REQUIRE", "force"), ("DISPLAY", ":0")];
    let o = inet.ssh(&by_password, &addr, "id -un", None, &env);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "root\n", "password login: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&askpass, "#!/bin/sh\necho 'not the password'\n").unwrap();
    let o = inet.ssh(&by_password, &addr, "id -un", None, &env);
    assert!(!o.status.success() && o.stdout.is_empty(), "a wrong password logged in");

    t.host.destroy(&a.id).unwrap();
}

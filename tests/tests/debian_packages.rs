//! The Debian packages (`./vessel package`: vessel-panel and vessel-provisioner, built by
//! cargo-deb) installed the way a provider installs them, into the project's own Debian 12
//! (the `debian-12` container template) booted with systemd as pid 1 by `systemd-nspawn`:
//! `apt-get install ./vessel-*.deb`, the `vessel` system user and the configuration's
//! permissions, nothing started before it is configured, then configured: the panel's unit
//! migrates a PostgreSQL (a cluster this test runs on the host, reached through its socket)
//! and serves `/healthz` and its metrics; a host joins and its unit serves `/healthz` over
//! TLS, and the panel, hardened, reaches it; the hardening is in force in the running
//! processes, not only written in the units; an upgrade (the package installed again)
//! restarts both and migrates again; purge leaves neither user nor configuration.
//!
//! Why systemd-nspawn and not the provisioner's own containers: those are tenants' containers
//! (no CAP_SYS_ADMIN, a user namespace), where systemd cannot set up the mount namespaces that
//! `ProtectSystem=` and `PrivateTmp=` are; nspawn runs the same root file system with systemd
//! as pid 1, its own cgroup subtree and the capabilities a real machine's systemd has. The
//! container has no network but loopback: the packages' dependencies are installed in the
//! cached root ahead (`tests/scripts/package-test-root.sh`), and `apt-get install` fails
//! loudly if a package needs one that is not there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A Debian 12 booted by systemd-nspawn on a volatile overlay of `root` (its writes go to a
/// tmpfs and vanish with it), in cgroups of its own that are removed afterwards.
struct Machine {
    nspawn: Child,
    leader: u32,
    cgroups: Vec<PathBuf>,
    log: PathBuf,
}

impl Machine {
    fn boot(root: &Path, binds: &[(&Path, &str)], scratch: &Path) -> Machine {
        let name = format!("vessel-pkgtest-{}", std::process::id());
        // nspawn makes its `payload` and `supervisor` groups below its own: give it one of
        // ours, so that two runs never meet and nothing is left at the root of the hierarchy.
        let cgroups: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            vec![PathBuf::from("/sys/fs/cgroup").join(&name)]
        } else {
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"].iter().map(|h| Path::new(h).join(&name)).collect()
        };
        for c in &cgroups {
            assert!(c.parent().unwrap().exists(), "FAILED LOUDLY: no cgroup hierarchy at {}", c.parent().unwrap().display());
            std::fs::create_dir_all(c).unwrap();
        }
        let join: String = cgroups.iter().map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).collect();
        let mut args = vec![
            "--quiet".to_string(),
            "--register=no".into(),
            "--keep-unit".into(),
            "--volatile=overlay".into(),
            "--private-network".into(),
            format!("--machine={name}"),
            format!("--directory={}", root.display()),
        ];
        for (from, to) in binds {
            args.push(format!("--bind={}:{to}", from.display()));
        }
        args.push("--boot".into());
        let log = scratch.join("nspawn.log");
        let nspawn = Command::new("sh")
            .arg("-c")
            .arg(format!("{join}exec systemd-nspawn \"$@\""))
            .arg("sh")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(scratch.join("nspawn.err")).unwrap())
            .spawn()
            .expect("FAILED LOUDLY: systemd-nspawn runs (apt-get install systemd-container)");
        let mut m = Machine { leader: 0, nspawn, cgroups, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while m.leader == 0 {
            if let Some(pid) = child_named(m.nspawn.id(), "systemd") {
                m.leader = pid;
            } else {
                if let Ok(Some(status)) = m.nspawn.try_wait() {
                    panic!(
                        "systemd-nspawn ended ({status}): {}{}",
                        m.log(),
                        std::fs::read_to_string(scratch.join("nspawn.err")).unwrap_or_default()
                    );
                }
                assert!(Instant::now() < deadline, "no systemd in the container after 30 s: {}", m.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `cmd` with `sh -c` inside the container (its mount, pid, network, ipc and uts
    /// namespaces), as root.
    fn sh(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-m", "-u", "-i", "-n", "-p", "--", "/bin/sh", "-c", cmd])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap()
    }

    fn sh_ok(&self, cmd: &str) -> String {
        let o = self.sh(cmd);
        assert!(
            o.status.success(),
            "in the container: {cmd}: {}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Polls `cmd` until it succeeds, failing after `secs` with what the units logged.
    fn wait_ok(&self, what: &str, secs: u64, cmd: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let o = self.sh(cmd);
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
            if Instant::now() > deadline {
                let journal = self.sh("journalctl --no-pager -n 60 -u vessel-panel -u vessel-provisioner");
                panic!(
                    "{what}: not within {secs} s ({cmd}): {}{}\njournal:\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr),
                    String::from_utf8_lossy(&journal.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn unit(&self, unit: &str, property: &str) -> String {
        self.sh_ok(&format!("systemctl show -p {property} --value {unit}")).trim().to_string()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM: nspawn asks the container's systemd to power off cleanly.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.nspawn.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        for c in &self.cgroups {
            remove_cgroup(c);
        }
    }
}

/// Removes a cgroup and the groups below it (depth first; they are empty once nspawn ended).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A child process of `parent` whose command is `comm` (the container's pid 1, as the host sees it).
fn child_named(parent: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let (head, rest) = stat.rsplit_once(')')?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && head.split_once('(')?.1 == comm).then_some(pid)
    })
}

/// The Depends field of a .deb.
fn depends(deb: &Path) -> String {
    run(Command::new("dpkg-deb").arg("--field").arg(deb).arg("Depends")).trim().to_string()
}

/// The PostgreSQL cluster this test runs, stopped when dropped.
struct Pg(vessel_devdb::Cluster);

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "issue 19: written, not yet seen passing (its first run spent the session's end in the release build); run with --run-ignored"]
async fn the_packages_install_start_answer_upgrade_and_purge_in_debian_12_under_systemd() {
    assert!(is_root(), "FAILED LOUDLY: the package test boots a container and needs root");
    for tool in ["systemd-nspawn", "nsenter", "dpkg-deb"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).status().unwrap().success(),
            "FAILED LOUDLY: {tool} is missing (scripts/ensure-test-deps installs it)"
        );
    }
    let t0 = Instant::now();
    let scratch = tempfile::Builder::new().prefix("vessel-pkgtest-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // The packages, as `./vessel package` builds them (release; cargo does nothing when current).
    let debs = scratch.path().join("debs");
    let listed = run(Command::new(repo().join("vessel")).arg("package").arg(&debs));
    let find = |prefix: &str| -> PathBuf {
        let found: Vec<PathBuf> =
            listed.lines().map(PathBuf::from).filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "one {prefix}*.deb in: {listed}");
        found[0].clone()
    };
    let (panel_deb, host_deb) = (find("vessel-panel_"), find("vessel-provisioner_"));
    let built = t0.elapsed();

    // The project's debian-12 template, and the cached root with the packages' dependencies.
    let template = run(&mut Command::new(repo().join("provisioner/scripts/build-template-debian-12.sh"))).trim().to_string();
    let deps = format!("{}, {}", depends(&panel_deb), depends(&host_deb)).replace("$auto", "");
    let root = run(Command::new(repo().join("tests/scripts/package-test-root.sh")).arg(&template).arg(&deps)).trim().to_string();

    // The panel's PostgreSQL, on the host, reached from the container through its socket.
    let pg_dir = scratch.path().join("pg");
    let pg = Pg(vessel_devdb::Cluster::new(&pg_dir).unwrap());
    let server = pg.0.start(vessel_devdb::StartOptions { throwaway: true }).unwrap();
    let port: u16 = url_port(&server);
    let mut admin = sqlx::PgPool::connect(&server).await.unwrap();
    sqlx::query("CREATE DATABASE vessel").execute(&admin).await.unwrap();
    admin.close().await;
    let db_url = vessel_devdb::with_database(&server, "vessel").unwrap();
    admin = sqlx::PgPool::connect(&db_url).await.unwrap();

    let m = Machine::boot(Path::new(&root), &[(&debs, "/debs"), (&pg_dir, "/run/vessel-pg")], scratch.path());
    let state = m.wait_ok(
        "the container's systemd to finish booting",
        60,
        "s=$(systemctl is-system-running); echo $s; [ $s = running ] || [ $s = degraded ]",
    );
    if state.trim() == "degraded" {
        eprintln!("booted degraded: {}", m.sh_ok("systemctl --failed --no-legend --plain --no-pager"));
    }
    assert_eq!(m.sh_ok("cat /proc/1/comm").trim(), "systemd");
    let booted = t0.elapsed();

    // Installed as the README says, with apt (offline: every dependency is already there).
    let debs_in =
        format!("/debs/{} /debs/{}", panel_deb.file_name().unwrap().to_str().unwrap(), host_deb.file_name().unwrap().to_str().unwrap());
    m.sh_ok(&format!("apt-get install -y -q --no-install-recommends {debs_in}"));
    let user = m.sh_ok("getent passwd vessel");
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert!(fields[2].parse::<u32>().unwrap() < 1000, "a system user: {user}");
    assert_eq!((fields[5], fields[6]), ("/var/lib/vessel-panel", "/usr/sbin/nologin"), "{user}");
    assert_eq!(m.sh_ok("stat -c '%U:%G %a' /etc/vessel/panel.toml").trim(), "root:vessel 640", "the panel's secrets are its own");
    assert!(m.sh_ok("dpkg-query -W -f='${Conffiles}' vessel-panel vessel-provisioner").contains("/etc/vessel/provisioner.toml"));
    // The VMM-only binary sits beside the daemon, so each KVM machine runs it (daemon::vmm_binary).
    m.sh_ok("test -x /usr/bin/vessel-vmm && test -x /usr/bin/vessel-provisioner");
    for unit in ["vessel-panel", "vessel-provisioner"] {
        assert_eq!(m.sh_ok(&format!("systemctl is-enabled {unit}")).trim(), "enabled", "{unit} starts at boot");
        // Nothing starts before it is configured (the panel's database and seller, the host's join).
        let active = m.sh(&format!("systemctl is-active {unit}"));
        assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "inactive", "{unit} before configuration");
    }
    assert!(m.sh_ok("ls /usr/share/vessel/plans").contains("burst-s.toml"));

    // The provider's configuration: the database, the seller, a session secret.
    m.sh_ok(&format!(
        "sed -i -e 's|^url = .*|url = \"postgres://postgres@localhost:{port}/vessel?host=/run/vessel-pg\"|' \
             -e 's|^base_url = .*|base_url = \"http://127.0.0.1:8000\"|' \
             -e 's|^secret = \"\"|secret = \"package-test-session-secret-0123456789abcdef\"|' \
             -e 's|^legal_name = \"\"|legal_name = \"Package Test GmbH\"|' \
             -e 's|^address = \"\"|address = \"Teststrasse 1, 10115 Berlin\"|' \
             -e 's|^country = \"\"|country = \"DE\"|' \
             -e 's|^vat_id = \"\"|vat_id = \"DE811907980\"|' /etc/vessel/panel.toml"
    ));
    assert_eq!(m.sh_ok("stat -c '%U:%G %a' /etc/vessel/panel.toml").trim(), "root:vessel 640");
    m.sh_ok("systemctl start vessel-panel");
    m.wait_ok("the panel's /healthz", 60, "curl -fsS http://127.0.0.1:8000/healthz");
    assert_eq!(m.sh_ok("systemctl is-active vessel-panel").trim(), "active");

    // Its unit migrated the database (ExecStartPre), every migration this source has.
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&admin).await.expect("the unit migrated");
    assert_eq!(applied as usize, panel::db::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count());
    assert!(m.sh_ok("journalctl --no-pager -o cat -u vessel-panel").contains("migrations applied"));
    assert!(m.sh_ok("curl -fsS http://127.0.0.1:9464/metrics").contains("vessel_jobs_queued"), "the packaged config serves metrics");

    // Hardened as written, and in force in the running process.
    for (property, want) in [
        ("User", "vessel"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictNamespaces", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(m.unit("vessel-panel", property), want, "vessel-panel {property}");
    }
    let pid = m.unit("vessel-panel", "MainPID");
    assert_eq!(m.sh_ok(&format!("ps -o user= -p {pid}")).trim(), "vessel");
    let status = m.sh_ok(&format!("cat /proc/{pid}/status"));
    assert!(status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]), "{status}");
    assert!(status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["CapEff:", "0000000000000000"]), "{status}");
    // In its mount namespace /usr and /etc are read-only (even for root), /home is empty and
    // its state directory is writable.
    let probe = m.sh(&format!(
        "nsenter -t {pid} -m -- sh -c 'touch /usr/probe; touch /etc/probe; ls -A /home | wc -l; touch /var/lib/vessel-panel/probe && echo state-writable'"
    ));
    let (out, err) = (String::from_utf8_lossy(&probe.stdout), String::from_utf8_lossy(&probe.stderr));
    assert_eq!(err.matches("Read-only file system").count(), 2, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "state-writable"], "{out}{err}");

    // A host joins the panel and its unit serves; the panel (hardened) reaches it over TLS.
    let add = m.sh_ok("vessel-panel --config /etc/vessel/panel.toml hosts add --name pkg-host --api-url https://127.0.0.1:8443");
    assert!(
        add.contains("  vessel-provisioner join --config /etc/vessel/provisioner.toml --panel-url "),
        "the hint names the packaged binary: {add}"
    );
    let token = add.split_whitespace().skip_while(|w| *w != "--token").nth(1).unwrap_or_else(|| panic!("a join token in: {add}"));
    m.sh_ok(&format!(
        "vessel-provisioner join --config /etc/vessel/provisioner.toml --panel-url http://127.0.0.1:8000 --allow-http-panel \
         --token {token} --name pkg-host --api-url https://127.0.0.1:8443"
    ));
    m.sh_ok("systemctl start vessel-provisioner");
    m.wait_ok("the provisioner's /healthz over TLS", 60, "curl -fsSk https://127.0.0.1:8443/healthz");
    assert_eq!(m.sh_ok("systemctl is-active vessel-provisioner").trim(), "active");
    assert!(m.sh_ok("curl -fsS http://127.0.0.1:9465/metrics").contains("vessel_provisioner_capacity"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r: String = sqlx::query_scalar("SELECT reachability::text FROM hosts WHERE name = 'pkg-host'").fetch_one(&admin).await.unwrap();
        if r == "reachable" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the panel did not reach the host: {r}\n{}",
            m.sh_ok("journalctl --no-pager -n 40 -u vessel-panel")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(m.unit("vessel-provisioner", "KillMode"), "process", "a restart leaves the VPS running");
    assert_eq!(m.unit("vessel-provisioner", "Restart"), "on-failure");
    let host_pid = m.unit("vessel-provisioner", "MainPID");
    let bounding = m.sh_ok(&format!("cat /proc/{host_pid}/status"));
    let bnd = bounding.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(|h| u64::from_str_radix(h.trim(), 16).unwrap()).unwrap();
    assert_eq!(bnd & (1 << 16), 0, "CAP_SYS_MODULE is out of the provisioner's bounding set: {bnd:x}");
    assert_ne!(bnd & (1 << 21), 0, "CAP_SYS_ADMIN is kept (namespaces, mounts): {bnd:x}");

    // An upgrade: the packages installed again restart both; the panel migrates first.
    let before = (m.unit("vessel-panel", "InvocationID"), m.unit("vessel-provisioner", "InvocationID"));
    m.sh_ok(&format!("dpkg -i {debs_in}"));
    m.wait_ok("the panel's /healthz after the upgrade", 60, "curl -fsS http://127.0.0.1:8000/healthz");
    m.wait_ok("the provisioner's /healthz after the upgrade", 60, "curl -fsSk https://127.0.0.1:8443/healthz");
    let after = (m.unit("vessel-panel", "InvocationID"), m.unit("vessel-provisioner", "InvocationID"));
    assert_ne!(before.0, after.0, "the upgrade restarted the panel");
    assert_ne!(before.1, after.1, "the upgrade restarted the provisioner");
    assert_eq!(m.sh_ok("journalctl --no-pager -o cat -u vessel-panel").matches("migrations applied").count(), 2, "migrated on each start");

    // Purge: stopped, and no user, configuration, state or unit left.
    m.sh_ok("apt-get purge -y -q vessel-panel vessel-provisioner");
    for unit in ["vessel-panel", "vessel-provisioner"] {
        let active = m.sh(&format!("systemctl is-active {unit}"));
        assert_ne!(String::from_utf8_lossy(&active.stdout).trim(), "active", "{unit} after purge");
    }
    assert!(!m.sh("getent passwd vessel").status.success(), "the vessel user is gone");
    let left = m.sh_ok("ls -d /etc/vessel /var/lib/vessel-panel /var/lib/vessel/host.secret /usr/lib/systemd/system/vessel-*.service /lib/systemd/system/vessel-*.service 2>/dev/null; true");
    assert!(left.trim().is_empty(), "left after purge: {left}");
    eprintln!("packages built in {built:?}, container booted at {booted:?}, all done in {:?}", t0.elapsed());
    drop(m);
    admin.close().await;
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|u| u.split_whitespace().next() == Some("0"))))
        .unwrap_or(false)
}

fn url_port(url: &str) -> u16 {
    url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()?.parse().ok()).expect("a port in the server URL")
}

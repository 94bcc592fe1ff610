//! Issue 20, item 1, end to end: a customer's firewall reaches the server's host and holds
//! there. A real panel (reconciler on), a real host in its own network namespace, a busybox
//! container and a KVM machine.
//!
//! * From the host's network namespace (the way every packet from outside reaches a guest: the
//!   host routes it onto its bridge), a port the firewall drops does not answer (silence, not
//!   a reset: the SYN never arrives) and one it accepts does; the container's own outbound
//!   connection still works under a drop default.
//! * The provisioner killed and the table removed behind its back (a host restart loses
//!   the kernel's state): the dropped port answers again while the daemon is down, and drops
//!   once it is back (re-applied at start from its records).
//! * The host's firewall changed behind the panel's back (through the host's own API): the
//!   reconciler sends the panel's again.
//! * A KVM machine's TAP gets its own table keyed to it, and back after a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vessel_core::firewall::Verdict;
use vessel_core::Firewall;
use vessel_tests::e2e::{wait_for, Host, World};

/// Runs `f` on a thread of its own inside the network namespace at `ns`.
fn in_netns<T: Send + 'static>(ns: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
        // SAFETY: setns(2) moves only this thread, into a namespace whose fd we hold open.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {}: {}", ns.display(), std::io::Error::last_os_error());
        f()
    })
}

/// Listens on `port` (all addresses) inside `ns` for the rest of the test, answering each
/// connection with `port <n>`. Returns once it is bound.
fn serve(ns: PathBuf, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    in_netns(ns, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for mut s in l.incoming().flatten() {
            let _ = writeln!(s, "port {port}");
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("the listener binds");
}

/// What connecting from `ns` to `to` gets: the greeting, or the error (timed out: silence).
fn probe(ns: PathBuf, to: SocketAddr) -> Result<String, std::io::ErrorKind> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).map_err(|e| e.kind())?;
        Ok(got.trim().to_string())
    })
    .join()
    .unwrap()
}

fn answers(r: &Result<String, std::io::ErrorKind>, port: u16) -> bool {
    r.as_deref() == Ok(format!("port {port}").as_str())
}

fn silent(r: &Result<String, std::io::ErrorKind>) -> bool {
    matches!(r, Err(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
}

fn host_ns(host: &Host) -> PathBuf {
    PathBuf::from("/run/netns").join(&host.ns.name)
}

/// The host pid of the container's init, from the host's record.
fn container_pid(host: &Host, id: Uuid) -> u32 {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(host.dir.join("state/instances").join(format!("{id}.json"))).unwrap()).unwrap();
    rec["runtime"]["pid"].as_u64().expect("a running container has a pid") as u32
}

/// `nft` inside the host's namespace.
fn nft(host: &Host, args: &[&str]) -> std::process::Output {
    host.ns.command("nft").args(args).output().unwrap()
}

/// The firewall tables on the host (`vessel_fw_<port>`).
fn fw_tables(host: &Host) -> Vec<String> {
    let out = nft(host, &["list", "tables", "bridge"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table bridge "))
        .filter(|t| t.starts_with("vessel_fw_"))
        .map(str::to_string)
        .collect()
}

async fn set(w: &World, customer: Uuid, id: Uuid, fw: &Firewall) {
    let actor = panel::audit::Actor { id: Some(customer), kind: panel::audit::ActorKind::Customer };
    panel::firewall::set_now(&w.pool, panel::vps::Scope::customer(customer.into()), actor, id.into(), fw).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_firewall_drops_and_accepts_from_outside_survives_a_restart_and_converges() {
    let mut w = World::new(true).await;
    let mut host = w.add_host("h1", 2, 2048).await;
    w.serve(&mut host);
    let customer = w.customer("fw@example.com", 100_000).await;
    let ct = w.order_paid(customer, "burst-s", "fw-ct.example.com").await;
    let vm = w.order_paid(customer, "kvm-tiny-shared", "fw-vm.example.com").await;
    wait_for("the container to run", 120, async || (w.observed(ct).await == "running").then_some(())).await;
    wait_for("the machine to run", 120, async || (w.observed(vm).await == "running").then_some(())).await;
    let addr: std::net::IpAddr = sqlx::query_scalar::<_, String>("SELECT host(address) FROM ip_addresses WHERE instance_id = $1")
        .bind(ct)
        .fetch_one(&w.pool)
        .await
        .unwrap()
        .parse()
        .unwrap();
    let (open_port, closed_port) = (8080u16, 9090u16);
    let guest_ns = PathBuf::from(format!("/proc/{}/ns/net", container_pid(&host, ct)));
    serve(guest_ns.clone(), open_port);
    serve(guest_ns.clone(), closed_port);
    let outside = host_ns(&host);
    let probe_both = || {
        let (o, c) = (outside.clone(), outside.clone());
        (probe(o, SocketAddr::new(addr, open_port)), probe(c, SocketAddr::new(addr, closed_port)))
    };

    // No firewall yet: both answer.
    let (a, b) = probe_both();
    assert!(answers(&a, open_port) && answers(&b, closed_port), "open by default: {a:?} {b:?}");

    // The customer's firewall: only 8080 in (and the host's own gateway may still be pinged
    // back etc., see the implicit rules). Applied within seconds.
    let fw = Firewall::parse_lines(Verdict::Drop, &format!("accept tcp {open_port}\naccept icmp")).unwrap();
    let t0 = Instant::now();
    set(&w, customer, ct, &fw).await;
    set(&w, customer, vm, &fw).await;
    wait_for("the dropped port to go silent", 30, async || {
        let (a, b) = tokio::task::block_in_place(probe_both);
        (answers(&a, open_port) && silent(&b)).then_some(())
    })
    .await;
    eprintln!("applied on the host {:.1} s after the change", t0.elapsed().as_secs_f64());

    // The container's own connections still work under a drop default (stateless filter:
    // the SYN-ACK coming back is let through): it reaches a listener in the host's namespace.
    let gateway: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    serve(outside.clone(), 7070);
    let out = probe(guest_ns.clone(), SocketAddr::new(gateway, 7070));
    assert!(answers(&out, 7070), "the container's outbound connection: {out:?}");

    // Both kinds have their table, each keyed to its own port.
    let tables = fw_tables(&host);
    assert_eq!(tables.len(), 2, "{tables:?}");
    let tap = provisioner::vm::runtime::KvmRuntime::tap_name(&vessel_core::InstanceId(vm));
    assert!(tables.contains(&format!("vessel_fw_{tap}")), "the TAP's table: {tables:?}");
    let tap_rules = String::from_utf8_lossy(&nft(&host, &["list", "table", "bridge", &format!("vessel_fw_{tap}")]).stdout).to_string();
    assert!(tap_rules.contains(&format!("oifname \"{tap}\" jump inbound")), "{tap_rules}");
    assert!(tap_rules.contains(&format!("tcp dport {open_port} accept")), "{tap_rules}");

    // The daemon killed and the host's kernel state lost: the port answers while nobody
    // guards it (so this test can see a missing firewall) ...
    host.ns.kill_all();
    for t in &tables {
        let out = nft(&host, &["delete", "table", "bridge", t]);
        assert!(out.status.success(), "{out:?}");
    }
    let (_, b) = probe_both();
    assert!(answers(&b, closed_port), "without its table the port answers: {b:?}");
    // ... and the restarted daemon puts it back from its records, for both kinds.
    w.serve(&mut host);
    let (a, b) = probe_both();
    assert!(answers(&a, open_port) && silent(&b), "after the restart: {a:?} {b:?}");
    let mut again = fw_tables(&host);
    again.sort();
    let mut before = tables.clone();
    before.sort();
    assert_eq!(again, before);

    // Drift: the host's firewall changed behind the panel's back; the reconciler converges.
    let client = w.host_client(&host);
    let took = client.set_firewall(vessel_core::InstanceId(ct), &Firewall::default()).await.unwrap();
    assert!(took.firewall.is_open(), "the host took the other firewall");
    wait_for("the reconciler to put the panel's firewall back", 30, async || {
        let (a, b) = tokio::task::block_in_place(probe_both);
        (answers(&a, open_port) && silent(&b)).then_some(())
    })
    .await;

    // Terminated: the tables go with the ports.
    w.want(ct, "terminated").await;
    w.want(vm, "terminated").await;
    wait_for("both destroyed", 60, async || (w.observed(ct).await == "destroyed" && w.observed(vm).await == "destroyed").then_some(()))
        .await;
    assert_eq!(fw_tables(&host), Vec::<String>::new());
}

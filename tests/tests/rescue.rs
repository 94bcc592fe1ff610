//! Rescue (issue 13, item 4), end to end: a real panel, a real host (TLS, pinned) in its own
//! network namespace, the reseller API.
//!
//! * A container whose init is broken goes into rescue: the rescue system (busybox, with the
//!   customer's root password) runs with the customer's filesystem at `/mnt` and the same
//!   address; the customer logs in on the console, finds their file, repairs the init; leaving
//!   rescue boots their own system again, with the file and the repair in place.
//! * A KVM machine goes into rescue: the rescue kernel boots with the machine's own disk as the
//!   second virtio-blk device (its size in the kernel's own log); leaving rescue boots the
//!   machine's own system with one disk again.

use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vessel_tests::console::{self, Ws};
use vessel_tests::e2e::{wait_for, World};

const ROOT_PASSWORD: &str = "rescue-root-pass-42";

/// A reseller with a read/write API key; returns a poster of JSON to the API.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn new(w: &World) -> Api {
        let reseller: Uuid = sqlx::query_scalar(
            "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'r@rescue.example', 'R', 'active', now()) RETURNING id",
        )
        .fetch_one(&w.pool)
        .await
        .unwrap();
        let token = panel::api_keys::create(&w.pool, reseller, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
            .await
            .unwrap()
            .token;
        Api { http: reqwest::Client::new(), url: w.panel_url.clone(), token }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap().json().await.unwrap()
    }

    /// A server of a new customer, with the root password; returns its id.
    async fn server(&self, plan: &str, template: &str, hostname: &str) -> Uuid {
        let (s, c) = self.post("/api/v1/customers", serde_json::json!({"email": format!("end@{hostname}"), "name": "End Customer"})).await;
        assert_eq!(s, 201, "{c}");
        let (s, v) = self
            .post(
                "/api/v1/servers",
                serde_json::json!({"customer_id": c["id"], "plan": plan, "os_template": template, "hostname": hostname, "root_password": ROOT_PASSWORD}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().parse().unwrap()
    }
}

/// The newest `instance.action` job for `action` on the instance has succeeded.
async fn action_done(w: &World, inst: Uuid, action: &str, secs: u64) {
    wait_for(&format!("the {action} job to succeed"), secs, async || {
        let st: Option<String> = sqlx::query_scalar(
            "SELECT status::text FROM jobs WHERE kind = 'instance.action' AND payload->>'action' = $2 AND instance_id = $1
              ORDER BY created_at DESC LIMIT 1",
        )
        .bind(inst)
        .bind(action)
        .fetch_optional(&w.pool)
        .await
        .unwrap();
        (st.as_deref() == Some("succeeded")).then_some(())
    })
    .await;
}

/// A console through an API token, logged in as root.
async fn root_console(api: &Api, inst: Uuid) -> Ws {
    let (s, t) = api.post(&format!("/api/v1/servers/{inst}/console"), serde_json::json!(null)).await;
    assert_eq!(s, 201, "{t}");
    let url = format!("{}{}", api.url.replace("http://", "ws://"), t["websocket_path"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the console opens");
    console::expect(&mut ws, "login:").await;
    ws.send(Message::Binary(b"root\n".to_vec().into())).await.unwrap();
    console::expect(&mut ws, "Password:").await;
    // `login` turns the echo off just after its prompt: type later, as a person does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(Message::Binary(format!("{ROOT_PASSWORD}\n").into_bytes().into())).await.unwrap();
    console::expect(&mut ws, "# ").await;
    ws
}

/// Types `cmd` and reads until `needle`.
async fn run(ws: &mut Ws, cmd: &str, needle: &str) -> String {
    ws.send(Message::Binary(format!("{cmd}\n").into_bytes().into())).await.unwrap();
    console::expect(ws, needle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_that_no_longer_boots_is_repaired_from_rescue_and_boots_again() {
    let mut w = World::new(true).await;
    let mut host = w.add_host_with("h1", 2, 2048, true).await;
    w.serve(&mut host);
    let api = Api::new(&w).await;
    let hostname = "rescue-ct.example.com";
    let inst = api.server("burst-s", "busybox", hostname).await;
    wait_for("the container to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    let addr: String =
        sqlx::query_scalar("SELECT host(address) FROM ip_addresses WHERE instance_id = $1").bind(inst).fetch_one(&w.pool).await.unwrap();

    // The customer's data, and a broken init: this system would not boot again.
    let mut ws = root_console(&api, inst).await;
    // Its resolvers are its pool's (the world's pool names none: the defaults), not the host's.
    run(&mut ws, "cat /etc/resolv.conf", "nameserver 1.1.1.1\r\nnameserver 9.9.9.9").await;
    run(&mut ws, "echo customer-data-17 > /root/marker && mv /sbin/vessel-init /sbin/vessel-init.broken && echo DONE-$((6*7))", "DONE-42")
        .await;
    ws.close(None).await.ok();

    // Rescue, through the API: 202, the server says so, the host boots the rescue system.
    assert_eq!(api.post(&format!("/api/v1/servers/{inst}/leave-rescue"), serde_json::json!(null)).await.0, 409, "not in rescue yet");
    let (s, v) = api.post(&format!("/api/v1/servers/{inst}/rescue"), serde_json::json!(null)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["rescue"], true, "{v}");
    assert_eq!(api.post(&format!("/api/v1/servers/{inst}/reinstall"), serde_json::json!({})).await.0, 409, "no reinstall under a rescue");
    action_done(&w, inst, "rescue", 90).await;
    assert_eq!(w.observed(inst).await, "running");

    // In the rescue system: not the customer's root (no marker there), the customer's files at
    // /mnt, the same address, the customer's password. The init is repaired from here.
    let mut ws = root_console(&api, inst).await;
    run(&mut ws, "test -e /root/marker || echo RESCUE-ROOT-$((40+2))", "RESCUE-ROOT-42").await;
    run(&mut ws, "cat /mnt/root/marker", "customer-data-17").await;
    run(&mut ws, "cat /etc/resolv.conf", "nameserver 1.1.1.1\r\nnameserver 9.9.9.9").await;
    let ip = run(&mut ws, "ip -4 addr show eth0; echo IP-$((1+1))-END", "IP-2-END").await;
    assert!(ip.contains(&format!("inet {addr}/")), "the same address in rescue: {ip}");
    run(
        &mut ws,
        "mv /mnt/sbin/vessel-init.broken /mnt/sbin/vessel-init && echo repaired > /mnt/root/from-rescue && sync && echo FIXED-$((6*7))",
        "FIXED-42",
    )
    .await;
    ws.close(None).await.ok();

    // Leave rescue: the customer's own system boots, with the file and the repair.
    let (s, v) = api.post(&format!("/api/v1/servers/{inst}/leave-rescue"), serde_json::json!(null)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["rescue"], false, "{v}");
    action_done(&w, inst, "leave_rescue", 90).await;
    wait_for("the container to run its own system", 60, async || (w.observed(inst).await == "running").then_some(())).await;
    let mut ws = root_console(&api, inst).await;
    run(&mut ws, "cat /root/marker /root/from-rescue", "repaired").await;
    run(&mut ws, "test -d /mnt/root || echo OWN-ROOT-$((40+2))", "OWN-ROOT-42").await;
    ws.close(None).await.ok();
    assert_eq!(api.get(&format!("/api/v1/servers/{inst}")).await["rescue"], false);
    // Nothing of the rescue system is left mounted on the host.
    let rescue_root = host.dir.join("state/containers").join(inst.to_string()).join("rescue");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*rescue_root.to_string_lossy()), "rescue mounts left behind");
    // Terminated: nothing of it stays on the host (disk, loop device, mounts).
    let (s, v) = api.post(&format!("/api/v1/servers/{inst}/terminate"), serde_json::json!(null)).await;
    assert_eq!(s, 202, "{v}");
    wait_for("the server to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
    let dir = host.dir.join("state/containers").join(inst.to_string());
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&*dir.to_string_lossy()), "mounts left behind");

    // The clear root password (given to the API, written into the rescue system as a hash,
    // typed into four consoles) is in no log and nowhere in the database.
    let log = std::fs::read_to_string(host.dir.join("daemon.log")).unwrap();
    assert!(log.contains(&inst.to_string()), "the host's log is real");
    assert!(!log.contains(ROOT_PASSWORD), "the clear password is in the host's log");
    let o = w.pool.connect_options();
    let dump = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .args(["-h", o.get_host(), "-p", &o.get_port().to_string(), "-U", o.get_username(), "--data-only", o.get_database().unwrap()])
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(hostname) && dump.contains("console.close"), "the dump is real");
    assert!(!dump.contains(ROOT_PASSWORD), "the clear password is in the database");
}

/// The serial log from `from` bytes on (what the machine printed since; all of it if the log
/// was rotated meanwhile).
fn serial_since(vm_dir: &std::path::Path, from: usize) -> String {
    let all = std::fs::read(vm_dir.join("serial.log")).unwrap_or_default();
    String::from_utf8_lossy(all.get(from..).unwrap_or(&all)).into_owned()
}

async fn wait_serial(w: &World, inst: Uuid, vm_dir: &std::path::Path, from: usize, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !serial_since(vm_dir, from).contains(want) {
        assert!(std::time::Instant::now() < deadline, "no {want:?} within 600 s:\n{}", serial_since(vm_dir, from));
        assert_eq!(w.observed(inst).await, "running", "the machine stopped:\n{}", serial_since(vm_dir, from));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kernel mode is emulated on the nested PVM test hosts (see kvm_linux_order.rs): each boot
/// of the test kernel takes about a minute; every wait is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kvm_machine_boots_the_rescue_kernel_with_its_disk_second_and_back() {
    let mut w = World::new(true).await;
    w.use_test_kernel().await;
    let mut host = w.add_host("h1", 2, 1024).await;
    w.serve(&mut host);
    let customer = w.customer("kvm-rescue@example.com", 1000).await;
    let inst = w.order_paid_with(customer, "kvm-linux-shared", provisioner::vm::test_kernel::TEMPLATE, "kvm-rescue.example.com").await;
    wait_for("the VPS to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    const DISK_GIB: u64 = 3;
    let own = format!("[vda] {} 512-byte logical blocks", (DISK_GIB << 30) / 512);
    let vm_dir = host.dir.join("state").join("vm").join(inst.to_string());
    wait_serial(&w, inst, &vm_dir, 0, &own).await;

    // Rescue, as the customer asks it on the server page.
    let clock = panel::clock::SystemClock;
    let from = std::fs::metadata(vm_dir.join("serial.log")).unwrap().len() as usize;
    panel::instances::request_action(&w.pool, &clock, customer.into(), inst.into(), vessel_core::Action::Rescue).await.unwrap();
    action_done(&w, inst, "rescue", 120).await;
    let config = std::fs::read_to_string(vm_dir.join("config.json")).unwrap();
    assert!(config.contains("rescue.raw") && config.contains("more_disks"), "the rescue disk first, the own disk second: {config}");
    // The rescue kernel's own disk is vda (64 MiB); the machine's disk (3 GiB) is vdb.
    let rescue = format!("[vda] {} 512-byte logical blocks", (64u64 << 20) / 512);
    let second = format!("[vdb] {} 512-byte logical blocks", (DISK_GIB << 30) / 512);
    wait_serial(&w, inst, &vm_dir, from, &second).await;
    let log = serial_since(&vm_dir, from);
    assert!(log.contains(&rescue), "the rescue system's disk first:\n{log}");
    assert!(!log.contains(&own), "the machine's disk is not the first disk in rescue:\n{log}");
    assert_eq!(w.observed(inst).await, "running");
    // Neither reinstalled nor resized under a rescue.
    let e =
        panel::instances::request_action(&w.pool, &clock, customer.into(), inst.into(), vessel_core::Action::Reinstall).await.unwrap_err();
    assert!(e.to_string().contains("rescue"), "{e}");

    // Back: the machine's own system, its disk first and alone.
    let from = std::fs::metadata(vm_dir.join("serial.log")).unwrap().len() as usize;
    panel::instances::request_action(&w.pool, &clock, customer.into(), inst.into(), vessel_core::Action::LeaveRescue).await.unwrap();
    action_done(&w, inst, "leave_rescue", 120).await;
    let config = std::fs::read_to_string(vm_dir.join("config.json")).unwrap();
    assert!(!config.contains("rescue.raw") && !config.contains("more_disks"), "{config}");
    assert!(!vm_dir.join("rescue.raw").exists(), "the rescue disk is gone");
    wait_serial(&w, inst, &vm_dir, from, &own).await;
    let log = serial_since(&vm_dir, from);
    assert!(!log.contains("[vdb]"), "one disk again:\n{log}");

    w.want(inst, "terminated").await;
    wait_for("the VPS to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
}

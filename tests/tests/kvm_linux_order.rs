//! A customer's KVM order of a real Linux kernel, end to end: the panel places and pays it,
//! the host (a provisioner in a network namespace of its own) makes the machine's disk of the
//! plan's size and its TAP on the host bridge under the host-side guards, and the machine
//! (the project's Linux test kernel, `linux-test-kernel`) reaches running, mounts that disk as
//! its root and answers ping at the address the panel assigned.
//!
//! Kernel mode is emulated on the nested PVM test hosts, so the kernel takes minutes to come
//! up on a loaded machine; the wait is bounded at 15 minutes.

use std::time::{Duration, Instant};
use vessel_tests::e2e::{wait_for, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kvm_order_of_the_test_kernel_runs_with_its_disk_and_answers_ping() {
    let mut w = World::new(true).await;
    w.use_test_kernel().await;
    let mut host = w.add_host("h1", 2, 1024).await;
    w.serve(&mut host);
    let customer = w.customer("linux@example.com", 1000).await;
    let inst = w.order_paid_with(customer, "kvm-linux-shared", provisioner::vm::test_kernel::TEMPLATE, "linux.example.com").await;
    wait_for("the VPS to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    let address: String =
        sqlx::query_scalar("SELECT host(address) FROM ip_addresses WHERE instance_id = $1").bind(inst).fetch_one(&w.pool).await.unwrap();

    // The disk is the plan's size (kvm-linux-shared: 3 GiB).
    const DISK_GIB: u64 = 3;
    let vm_dir = host.dir.join("state").join("vm").join(inst.to_string());
    assert_eq!(std::fs::metadata(vm_dir.join("disk.raw")).unwrap().len(), DISK_GIB << 30);

    // The kernel finds that disk, mounts it, configures the panel's address, answers ping.
    let serial = || std::fs::read_to_string(vm_dir.join("serial.log")).unwrap_or_default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(900);
    for want in [
        format!("[vda] {} 512-byte logical blocks", (DISK_GIB << 30) / 512),
        format!("ipaddr={address},"),
        "VFS: Mounted root (ext4 filesystem)".to_string(),
    ] {
        while !serial().contains(&want) {
            assert!(Instant::now() < deadline, "no {want:?} within 900 s:\n{}", serial());
            assert_eq!(w.observed(inst).await, "running", "the machine stopped:\n{}", serial());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("{:>6.1} s  {want}", started.elapsed().as_secs_f64());
    }
    let ping = || host.ns.command("ping").args(["-c", "1", "-W", "5", &address]).output().unwrap().status.success();
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        answered = tokio::task::block_in_place(ping);
    }
    assert!(answered, "{address} never answered ping from its host:\n{}", serial());
    eprintln!("{:>6.1} s  ping answered", started.elapsed().as_secs_f64());

    // Terminated: destroyed on the host, its disk gone with it.
    w.want(inst, "terminated").await;
    wait_for("the VPS to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
    assert!(!vm_dir.exists(), "the machine's directory and disk are removed");
}

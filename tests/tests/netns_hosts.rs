//! Several provisioners on one machine, each in its own network namespace: both answer
//! signed requests from the root namespace; cutting one's link makes requests to it time
//! out while the other still answers; restoring it brings it back; nothing is left after.

use provisioner::client::{http_client, HostClient};
use provisioner::config::write_private;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vessel_core::signing::HostSecret;
use vessel_tests::netns::{provisioner_binary, HostNs, Network};

fn secret() -> HostSecret {
    let mut b = Vec::new();
    for _ in 0..2 {
        b.extend(std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().replace('-', "").into_bytes());
    }
    HostSecret::from_bytes(b).unwrap()
}

/// Starts `provisioner serve` in `host` on port 7443 and waits until it listens.
fn serve(host: &mut HostNs, bin: &std::path::Path, dir: &std::path::Path, secret: &HostSecret) -> String {
    let state = dir.join("state");
    write_private(&state.join("host.secret"), secret.to_base64().as_bytes()).unwrap();
    let cfg = dir.join("provisioner.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{}:7443\"\nstate_dir = {:?}\nimages_dir = {:?}\ncgroup_parent = \"vessel-netns-{}\"\n[capacity]\ncpus = 2\nmemory_mib = 1024\ndisk_gib = 10\n",
            host.addr,
            state,
            dir.join("images"),
            host.name
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut cmd = host.command(bin);
    cmd.args(["serve", "--config"]).arg(&cfg).stdout(Stdio::piped()).stderr(log);
    let child = host.spawn(cmd).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("daemon in {} did not start: {}", host.name, std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()));
        if let Some(url) = line.strip_prefix("listening on ") {
            return url.trim().to_string();
        }
    }
}

async fn host_report(c: &HostClient) -> Result<u16, String> {
    c.json::<()>(reqwest::Method::GET, "/v1/host", None).await.map(|(s, _)| s).map_err(|e| e.to_string())
}

fn listed(what: &[&str], needle: &str) -> bool {
    let out = Command::new("ip").args(what).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_in_namespaces_and_one_cut_off() {
    let bin = provisioner_binary().expect("the provisioner binary");
    let scratch = tempfile::tempdir().unwrap();
    let mut net = Network::new().expect("making the test network (needs root and iproute2)");
    let mut a = net.add_host().unwrap();
    let mut b = net.add_host().unwrap();
    let (sa, sb) = (secret(), secret());
    let (da, db) = (scratch.path().join("a"), scratch.path().join("b"));
    let url_a = serve(&mut a, &bin, &da, &sa);
    let url_b = serve(&mut b, &bin, &db, &sb);
    assert_eq!(url_a, format!("http://{}:7443", a.addr));
    assert_eq!(url_b, format!("http://{}:7443", b.addr));

    let http = http_client(None, Duration::from_secs(2)).unwrap();
    let ca = HostClient::new(&url_a, sa.clone(), http.clone());
    let cb = HostClient::new(&url_b, sb.clone(), http.clone());
    // Both answer from the root namespace, each only to its own secret.
    assert_eq!(host_report(&ca).await, Ok(200));
    assert_eq!(host_report(&cb).await, Ok(200));
    let crossed = HostClient::new(&url_a, sb.clone(), http.clone());
    assert_eq!(host_report(&crossed).await, Ok(401));

    // Cut A: requests to it time out, B still answers.
    a.cut().unwrap();
    let t = Instant::now();
    let r = host_report(&ca).await;
    assert!(r.is_err(), "a cut-off host must not answer: {r:?}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "it timed out rather than being refused: {:?}", t.elapsed());
    assert_eq!(host_report(&cb).await, Ok(200));

    // Restore A: it answers again (the daemon never noticed).
    a.restore().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match host_report(&ca).await {
            Ok(200) => break,
            other => assert!(Instant::now() < deadline, "A did not come back: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Teardown leaves nothing: processes, namespaces, links, the bridge.
    let names = (a.name.clone(), b.name.clone());
    drop(a);
    drop(b);
    drop(net);
    assert!(!listed(&["netns", "list"], &names.0) && !listed(&["netns", "list"], &names.1));
    let short = names.0.trim_start_matches("vessel-").split('-').next().unwrap().to_string();
    assert!(!listed(&["-o", "link", "show"], &short), "no link of this test is left");
    let ps = Command::new("pgrep").args(["-f", &da.join("provisioner.toml").to_string_lossy()]).output().unwrap();
    assert!(ps.stdout.is_empty(), "no daemon is left: {}", String::from_utf8_lossy(&ps.stdout));
}

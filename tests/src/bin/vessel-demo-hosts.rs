//! `vessel-demo-hosts`: the two provisioner hosts `./vessel up` runs beside its panel, each in
//! its own network namespace with its own address (the same network code the end-to-end tests
//! use, `vessel_tests::netns`).
//!
//! ```text
//! vessel-demo-hosts --panel-url http://127.0.0.1:8000 --state .vessel/hosts [--hosts 2]
//! ```
//!
//! With `DATABASE_URL` set to the panel's database it:
//! 1. makes sure the demo can sell something: the `busybox` (containers), `vessel-test-guest`
//!    and `linux-test-kernel` (KVM; the kernel from `scripts/build-test-kernel`, cached) OS
//!    templates and an address pool `demo-v4`, when missing;
//! 2. makes a bridge and one namespace per host (`10.251.X.0/24`, X derived from the state
//!    dir so addresses stay the same from run to run), and relays the panel's port onto the
//!    bridge so the hosts can reach a panel that listens on loopback;
//! 3. for each host `demo-N`: registers it (`panel::hosts::register`, what `panel hosts add`
//!    does), runs `provisioner join` with the token inside its namespace, then
//!    `provisioner serve`. A host joined in an earlier run (its secret and id in its state
//!    dir, the row in the database) is served again without a new join, so its VPS return;
//! 4. prints `host <name> <address> <api url> <namespace>` per host, then `ready`;
//! 5. on SIGINT/SIGTERM stops the daemons and their instances (processes, cgroups, mounts,
//!    loop devices) and removes the namespaces, links and bridge. The instances' disks and
//!    records stay in the state dir: next time they are started again, like after a reboot.

use anyhow::{bail, Context};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use vessel_tests::netns::{is_root, release_storage, HostNs, Network};

const API_PORT: u16 = 7443;

struct Args {
    panel_url: String,
    state: PathBuf,
    hosts: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut panel_url, mut state, mut hosts) = (None, None, 2);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--panel-url" => panel_url = it.next(),
            "--state" => state = it.next().map(PathBuf::from),
            "--hosts" => hosts = it.next().context("--hosts N")?.parse().context("--hosts N")?,
            _ => bail!("usage: vessel-demo-hosts --panel-url URL --state DIR [--hosts N]"),
        }
    }
    let state = state.context("--state DIR is required")?;
    std::fs::create_dir_all(&state)?;
    Ok(Args { panel_url: panel_url.context("--panel-url URL is required")?, state: state.canonicalize()?, hosts })
}

/// The `provisioner` binary: `VESSEL_PROVISIONER_BIN`, else the one beside this program
/// (the same cargo build made both).
fn provisioner_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("VESSEL_PROVISIONER_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe()?;
    let p = me.parent().context("this program's directory")?.join("provisioner");
    anyhow::ensure!(p.exists(), "no provisioner binary at {} (build it: cargo build -p provisioner)", p.display());
    Ok(p)
}

/// OS templates and addresses, so an order can be placed and run. Adds only what is missing.
async fn seed(pool: &PgPool, admin: Uuid) -> anyhow::Result<()> {
    let by = || panel::admin::By { admin, addr: None };
    let templates = [
        ("busybox", "Busybox (demo)", true, false),
        ("vessel-test-guest", "Vessel test guest (demo)", false, true),
        (provisioner::vm::test_kernel::TEMPLATE, provisioner::vm::test_kernel::DISPLAY_NAME, false, true),
    ];
    for (name, display, ct, kvm) in templates {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM os_templates WHERE name = $1)").bind(name).fetch_one(pool).await?;
        if !exists {
            let form = panel::admin::OsTemplateForm {
                name: name.into(),
                display_name: display.into(),
                for_containers: ct.then(|| "on".into()),
                for_kvm: kvm.then(|| "on".into()),
                ..Default::default()
            };
            panel::admin::create_os_template(pool, by(), &form).await.with_context(|| format!("OS template {name}"))?;
        }
    }
    let pools: i64 = sqlx::query_scalar("SELECT count(*) FROM ip_pools").fetch_one(pool).await?;
    if pools == 0 {
        // TEST-NET-3: documentation addresses, routed nowhere, as a demo's should be.
        let form = panel::admin::PoolForm {
            name: "demo-v4".into(),
            network: "203.0.113.0/24".into(),
            gateway: "203.0.113.1".into(),
            host_id: String::new(),
            nat: None,
            dns: String::new(),
        };
        let id = panel::admin::create_pool(pool, by(), &form).await.context("address pool")?;
        panel::admin::generate_addresses(pool, by(), id, 200).await.context("addresses")?;
    }
    Ok(())
}

/// Accepts on `listen` and pipes each connection to `panel`: hosts in their namespaces reach
/// the panel through the bridge while the panel itself keeps listening on loopback.
async fn relay(listen: SocketAddr, panel: SocketAddr) -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("relay on {listen}"))?;
    let at = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(panel).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Ok(at)
}

struct DemoHost {
    ns: HostNs,
    name: String,
    dir: PathBuf,
    api_url: String,
}

/// Lays out a host's directory: config, the KVM test guest and test kernel images, the busybox template.
fn prepare(dir: &Path, ns: &HostNs, guest_elf: &Path, test_kernel: &Path) -> anyhow::Result<PathBuf> {
    Ok(ns.lay_out_host(dir, API_PORT, guest_elf, Some(test_kernel), "")?)
}

/// Joins `name` with a fresh token, unless this state dir already holds the secret of a host
/// the database knows by that name (then only its address is brought up to date).
async fn join_or_reuse(pool: &PgPool, admin: Uuid, bin: &Path, h: &mut DemoHost, config: &Path, panel_url: &str) -> anyhow::Result<()> {
    let state = h.dir.join("state");
    // A host joined before TLS was the default (no certificate, or one the panel did not pin)
    // joins again: the panel must reach it through the certificate it serves.
    let pin = provisioner::join::cert_sha256(&state.join("tls/cert.pem")).ok();
    let known = match std::fs::read_to_string(state.join("host.id")).ok().and_then(|s| Uuid::parse_str(s.trim()).ok()) {
        Some(id) if state.join("host.secret").exists() && pin.is_some() => {
            sqlx::query_scalar::<_, String>("SELECT name FROM hosts WHERE id = $1 AND api_secret IS NOT NULL AND tls_cert_sha256 = $2")
                .bind(id)
                .bind(&pin)
                .fetch_optional(pool)
                .await?
                .map(|name| (id, name))
        }
        _ => None,
    };
    if let Some((id, name)) = known {
        sqlx::query("UPDATE hosts SET api_url = $2 WHERE id = $1 AND api_url <> $2").bind(id).bind(&h.api_url).execute(pool).await?;
        tracing::info!(host = %name, %id, "joined in an earlier run: serving it again");
        h.name = name;
        return Ok(());
    }
    // A name another host already has (e.g. the state dir was removed, the database kept).
    let mut name = h.name.clone();
    for n in 2.. {
        let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM hosts WHERE name = $1)").bind(&name).fetch_one(pool).await?;
        if !taken {
            break;
        }
        name = format!("{}-{n}", h.name);
    }
    let (_, token) = panel::hosts::register(pool, Some(admin), &name, &h.api_url).await?;
    let mut join = h.ns.command(bin);
    join.args(["join", "--force", "--config"])
        .arg(config)
        .args(["--panel-url", panel_url, "--name", &name, "--api-url", &h.api_url])
        // The panel is this machine's, reached through the relay on the demo bridge.
        .arg("--allow-http-panel")
        .env("VESSEL_JOIN_TOKEN", &token)
        .stdin(std::process::Stdio::null());
    let out = tokio::process::Command::from(join).output().await?;
    anyhow::ensure!(out.status.success(), "provisioner join of {name}: {}", String::from_utf8_lossy(&out.stderr));
    h.name = name;
    Ok(())
}

/// Stops everything a host runs and leaves nothing behind but its files.
fn tear_down(h: DemoHost) {
    let DemoHost { mut ns, dir, .. } = h;
    ns.kill_all(); // the daemon first, so it restarts nothing
    ns.remove_cgroups(); // its machines and containers
    release_storage(&dir); // their mounts and loop devices
    drop(ns); // the namespace and its link
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = args()?;
    anyhow::ensure!(is_root(), "the demo hosts need root (network namespaces, cgroups, loop devices)");
    // Handlers first: a Ctrl-C while hosts come up must still tear down what was made.
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let db_url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let pool = PgPool::connect(&db_url).await.context("connecting to the database")?;
    let admin: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE role = 'admin' ORDER BY created_at LIMIT 1")
        .fetch_optional(&pool)
        .await?
        .context("no admin account: run `panel admin set-password` first")?;
    seed(&pool, admin).await?;
    let bin = provisioner_bin()?;
    let guest = provisioner::vm::guest::build(&args.state.join("guest")).context("building the KVM test guest (as, ld)")?;
    // Cached after the first time; the first build takes minutes (Debian's linux-source).
    tracing::info!("building the Linux test kernel (scripts/build-test-kernel; minutes the first time, cached after)");
    let test_kernel =
        provisioner::vm::test_kernel::build(Path::new(provisioner::vm::test_kernel::SCRIPT)).context("building the Linux test kernel")?;

    let panel_addr: SocketAddr = args
        .panel_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("the panel URL {} is not http://IP:PORT", args.panel_url))?;
    let mut net = Network::with_key(&args.state.to_string_lossy())?;
    let relay_at = relay(SocketAddr::new(net.gateway().into(), 0), panel_addr).await?;
    let relay_url = format!("http://{relay_at}");

    let mut hosts: Vec<DemoHost> = Vec::new();
    let up = async {
        for i in 1..=args.hosts {
            let ns = net.add_host()?;
            let name = format!("demo-{i}");
            let dir = args.state.join(&name);
            let api_url = format!("https://{}:{API_PORT}", ns.addr);
            hosts.push(DemoHost { ns, name, dir, api_url });
            let h = hosts.last_mut().expect("just pushed");
            // Whatever a killed earlier run left mounted or attached.
            release_storage(&h.dir);
            let config = tokio::task::block_in_place(|| prepare(&h.dir, &h.ns, &guest.elf, &test_kernel))?;
            join_or_reuse(&pool, admin, &bin, h, &config, &relay_url).await?;
            tokio::task::block_in_place(|| h.ns.serve(&bin, &config, &h.dir.join("daemon.log")))?;
            println!("host {} {} {} {}", h.name, h.ns.addr, h.api_url, h.ns.name);
        }
        println!("ready");
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = up => r.map(|()| true),
        _ = int.recv() => Ok(false),
        _ = term.recv() => Ok(false),
    };
    if let Ok(true) = outcome {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    // Further signals land in the handlers above (still installed): nothing stops the teardown.
    tracing::info!("stopping the demo hosts");
    for h in hosts.drain(..) {
        tear_down(h);
    }
    drop(net);
    outcome.map(|_| ())
}

//! Shared by the `api_*` integration tests: a real `provisioner serve` process on a scratch
//! state dir, images dir (the KVM test guest) and cgroup parent, with a signed client.
//! Dropping it kills the daemon, destroys every machine and removes the cgroup parent.
#![allow(dead_code)]

#[path = "../vm_support/mod.rs"]
mod vm_support;
#[allow(unused_imports)]
pub use vm_support::{kvm_plan, require_kvm, scratch, test_guest};

use provisioner::client::{http_client, HostClient};
use provisioner::config::write_private;
use provisioner::runtime::Runtime;
use provisioner::store::InstanceStore;
use provisioner::vm::runtime::{KvmRuntime, KvmRuntimeConfig, VmFacts};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vessel_core::admission::HostCapacity;
use vessel_core::signing::HostSecret;
use vessel_core::{Hostname, InstanceId, InstanceSpec, PlanResources};

pub const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

pub fn random_secret() -> HostSecret {
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    HostSecret::from_bytes(bytes).unwrap()
}

pub fn spec(resources: PlanResources) -> InstanceSpec {
    InstanceSpec {
        id: InstanceId::new_random(),
        hostname: Hostname::parse("api.example.com").unwrap(),
        template: "vessel-test-guest".into(),
        resources,
        access: Default::default(),
        network: Default::default(),
        firewall: Default::default(),
    }
}

pub struct Options {
    pub capacity: HostCapacity,
    /// (certificate PEM, key PEM) to serve TLS with.
    pub tls: Option<(String, String)>,
    /// With no `tls`: serve plain HTTP (`plain_http = true`, said explicitly: these suites
    /// test the API, not its transport), or, when false, the daemon's own self-signed
    /// certificate (the default in production), trusted by the harness's client.
    pub plain_http: bool,
    /// Extra environment for the daemon (`PROVISIONER__*` overrides).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options { capacity: HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 }, tls: None, plain_http: true, env: Vec::new() }
    }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub cgroup_parent: String,
    pub bridge: String,
    pub capacity: HostCapacity,
    pub secret: HostSecret,
    pub ca_pem: Option<Vec<u8>>,
    pub url: String,
    pub client: HostClient,
    /// The daemon's extra environment, used by the next `spawn`.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(opts: Options) -> Daemon {
        let guest = test_guest();
        // Container disks are loop-mounted images: /var/tmp, as the container suites use.
        let dir = tempfile::Builder::new().prefix("vessel-api-").tempdir_in("/var/tmp").unwrap();
        let images = dir.path().join("images");
        let image = images.join("vessel-test-guest");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::write(image.join("image.json"), serde_json::json!({"kernel": guest.elf, "cmdline": "heartbeat"}).to_string()).unwrap();
        let state_dir = dir.path().join("state");
        let sfx = uuid::Uuid::new_v4().simple().to_string();
        let cgroup_parent = format!("vessel-api-{sfx}");
        let bridge = format!("vza{}", &sfx[..8]);
        let c = opts.capacity;
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = {:?}\nimages_dir = {:?}\ntemplates_dir = {:?}\ncgroup_parent = {:?}\nbridge = {:?}\nstop_timeout_secs = 5\nworkers = 2\nroute = false\n",
            state_dir,
            images,
            templates(),
            cgroup_parent,
            bridge
        );
        let mut ca_pem = None;
        if let Some((cert, key)) = &opts.tls {
            let (cp, kp) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cp, cert).unwrap();
            write_private(&kp, key.as_bytes()).unwrap();
            toml += &format!("tls_cert = {cp:?}\ntls_key = {kp:?}\n");
            ca_pem = Some(cert.as_bytes().to_vec());
        } else if opts.plain_http {
            toml += "plain_http = true\n";
        }
        toml += &format!(
            "[capacity]\ncpus = {}\nmemory_mib = {}\ndisk_gib = {}\n[reserved]\ncpus = 0\nmemory_mib = 0\ndisk_gib = 0\n",
            c.cpus, c.memory_mib, c.disk_gib
        );
        let config_path = dir.path().join("provisioner.toml");
        std::fs::write(&config_path, toml).unwrap();
        let secret = random_secret();
        write_private(&state_dir.join("host.secret"), secret.to_base64().as_bytes()).unwrap();
        let http = http_client(ca_pem.as_deref(), Duration::from_secs(60)).unwrap();
        let mut d = Daemon {
            dir,
            config_path,
            state_dir,
            cgroup_parent,
            bridge,
            capacity: c,
            client: HostClient::new("http://invalid", secret.clone(), http),
            secret,
            ca_pem,
            url: String::new(),
            env: opts.env,
            child: None,
        };
        d.spawn();
        d
    }

    /// Starts `provisioner serve` and waits for its `listening on` line.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("daemon.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("provisioner serve runs");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        self.url = url.trim().to_string();
                        break;
                    }
                }
                Err(_) => panic!("the daemon did not start; its log:\n{}", self.log()),
            }
        }
        let own = self.state_dir.join("tls/cert.pem");
        if self.ca_pem.is_none() && own.exists() {
            // The daemon's self-signed certificate (made by `serve` or `join`; names 127.0.0.1).
            self.ca_pem = Some(std::fs::read(&own).unwrap());
        }
        let http = http_client(self.ca_pem.as_deref(), Duration::from_secs(60)).unwrap();
        self.client = HostClient::new(&self.url, self.secret.clone(), http);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// kill -9 of the daemon (not of its machines: they run in their own process groups).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn store(&self) -> InstanceStore {
        InstanceStore::open(&self.state_dir).unwrap()
    }

    /// The KVM runtime over the daemon's state: to check the host itself, and to clean up.
    pub fn kvm(&self) -> KvmRuntime {
        let cfg = KvmRuntimeConfig::new(
            self.state_dir.clone(),
            self.cgroup_parent.clone(),
            BIN.into(),
            self.dir.path().join("images"),
            self.capacity,
        );
        KvmRuntime::new(cfg, self.store())
    }

    pub fn pid_of(&self, id: &InstanceId) -> Option<i32> {
        let r = self.store().get(id).unwrap()?;
        serde_json::from_value::<VmFacts>(r.runtime).ok()?.pid
    }

    pub fn serial(&self, id: &InstanceId) -> String {
        std::fs::read_to_string(self.kvm().serial_log(id)).unwrap_or_default()
    }

    pub fn ticks(&self, id: &InstanceId) -> usize {
        self.serial(id).lines().filter(|l| l.starts_with("VESSEL-TICK")).count()
    }

    pub fn wait_ticking(&self, id: &InstanceId) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ticks(id) < 1 {
            assert!(Instant::now() < deadline, "guest never started its heartbeat; serial: {}", self.serial(id));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.client.json(m, path, body.as_ref()).await.expect("the daemon answers")
    }

    /// The kinds the daemon says it runs.
    pub fn kinds(&self) -> Vec<String> {
        let rt = tokio::runtime::Handle::try_current();
        let fetch = async { self.call("GET", "/v1/host", None).await.1 };
        let host = match rt {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(fetch)),
            Err(_) => tokio::runtime::Runtime::new().unwrap().block_on(fetch),
        };
        host["kinds"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect()
    }

    /// A request with exactly these headers (for the refusal tests).
    pub async fn raw(&self, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let http = http_client(self.ca_pem.as_deref(), Duration::from_secs(30)).unwrap();
        let mut req = http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{}", self.url, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_vec()).send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
        if status >= 400 {
            assert_eq!(ctype.as_deref(), Some("application/problem+json"), "errors are problem+json");
        }
        (status, v)
    }
}

impl Daemon {
    /// The container host over the daemon's state: to check the host itself, and to clean up.
    pub fn containers(&self) -> provisioner::container::manager::ContainerHost {
        let cfg = provisioner::container::ContainerConfig {
            state_dir: self.state_dir.clone(),
            cgroups: provisioner::cgroup::CgroupLayout::detect(std::path::Path::new("/sys/fs/cgroup"), self.cgroup_parent.clone()),
            templates: provisioner::template::TemplateStore::new(templates(), self.state_dir.join("template-cache")),
            bridge: self.bridge.clone(),
            veth_prefix: "vz".into(),
            helper_exe: BIN.into(),
            stop_timeout: Duration::from_secs(3),
            host_memory_mib: self.capacity.memory_mib,
            userns: Some(provisioner::container::IdPool::DEFAULT),
            route: false,
        };
        provisioner::container::manager::ContainerHost::new(provisioner::container::ContainerRuntime::new(cfg), self.capacity).unwrap()
    }
}

/// The busybox container template, built once per target dir by the project's own script.
pub fn templates() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ct-templates");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-template-busybox.sh");
    let out = Command::new("sh").arg(script).arg(&dir).output().expect("run the template script");
    assert!(out.status.success(), "template build failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let kvm = self.kvm();
        let ct = self.containers();
        for mut r in self.store().list().unwrap_or_default() {
            match r.spec.kind() {
                vessel_core::InstanceKind::Kvm => {
                    let _ = kvm.destroy(&mut r);
                    let _ = self.store().remove(&r.spec.id);
                }
                vessel_core::InstanceKind::Container => {
                    let _ = ct.destroy(&r.spec.id);
                }
            }
        }
        let _ = ct.reconcile();
        let _ = provisioner::vm::cgroup::remove_parent(&self.cgroup_parent);
        provisioner::cgroup::CgroupLayout::detect(std::path::Path::new("/sys/fs/cgroup"), self.cgroup_parent.clone()).remove_parent();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

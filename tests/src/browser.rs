//! Headless Chromium over WebDriver (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/ensure-test-deps`) for the end-to-end tests that need a real browser (the
//! console). The same approach as the panel's own browser test: a chromedriver on a free
//! port and a Chromium with a profile of its own, both gone when [`Browser::close`] returns.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vessel_devdb::procs::chromium_pids;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    pub c: Client,
    driver: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Fails loudly when Chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "FAILED LOUDLY: the browser tests need Debian's chromium and chromium-driver: run scripts/ensure-test-deps (as root)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "chromedriver did not come up on port {port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,1000", "--disable-crash-reporter", "--disable-breakpad",
                         format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser { c, driver, port, profile }
    }

    /// Ends the session and makes sure no process of ours is left.
    pub async fn close(mut self) {
        self.c.clone().close().await.ok();
        let _ = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await; // (chromedriver may already be gone)
        for _ in 0..50 {
            if chromium_pids(self.profile.path()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in chromium_pids(self.profile.path()) {
            // SAFETY: kill(2) on a pid of our own Chromium (found by its profile directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub async fn fill(&self, id: &str, value: &str) {
        let e = self.c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("field #{id}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    /// The result of a script (`return …`), retried until `ok` accepts it or `secs` pass.
    pub async fn wait_script(&self, what: &str, script: &str, secs: u64, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut last = serde_json::Value::Null;
        while std::time::Instant::now() < deadline {
            if let Ok(v) = self.c.execute(script, vec![]).await {
                if ok(&v) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("timed out after {secs} s waiting for {what}; last: {last}");
    }

    pub async fn screenshot(&self, path: &Path) {
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(path, png);
        }
    }
}

/// A test that panics never reaches `close`: without this its chromedriver and Chromium would
/// outlive it (found leaking after failed runs). After `close` this finds nothing left to kill.
impl Drop for Browser {
    fn drop(&mut self) {
        for pid in chromium_pids(self.profile.path()) {
            // SAFETY: kill(2) on a pid of our own Chromium (found by its profile directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

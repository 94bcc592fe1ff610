//! The outside services a customer's path meets, each a real one from a registry, started by
//! the test on a free port and stopped (by its own pid) when dropped:
//!
//! * [`MailCatcher`]: MailDev (npm, `scripts/ensure-mailcatcher`, the one `./vessel up` runs),
//!   read through its REST API;
//! * [`LocalStripe`]: localstripe (PyPI, `scripts/ensure-localstripe`), a stateful local Stripe
//!   server with its Stripe.js mock, its webhooks pointed at the panel.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs one of the project's `scripts/ensure-*` and returns the command it printed.
fn ensure(script: &str, env_override: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_override) {
        return p.into();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(script);
    let out = Command::new(&path).output().unwrap_or_else(|e| panic!("{script} runs: {e}"));
    assert!(out.status.success(), "FAILED LOUDLY: {script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

async fn wait_listening(what: &str, addr: (Ipv4Addr, u16)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not listen on {addr:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// MailDev: SMTP and its web API, on loopback.
pub struct MailCatcher {
    pub smtp_port: u16,
    pub web: String,
    _process: Process,
}

impl MailCatcher {
    pub async fn start() -> MailCatcher {
        let bin = tokio::task::spawn_blocking(|| ensure("ensure-mailcatcher", "VESSEL_MAILDEV")).await.unwrap();
        let (smtp_port, web_port) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--smtp", &smtp_port.to_string(), "--web", &web_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("maildev starts");
        let process = Process(child);
        wait_listening("maildev's SMTP", (Ipv4Addr::LOCALHOST, smtp_port)).await;
        wait_listening("maildev's web", (Ipv4Addr::LOCALHOST, web_port)).await;
        MailCatcher { smtp_port, web: format!("http://127.0.0.1:{web_port}"), _process: process }
    }

    /// The text of the newest mail to `to` whose subject contains `subject` (waits up to 30 s).
    pub async fn wait_for(&self, to: &str, subject: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mails: serde_json::Value =
                reqwest::get(format!("{}/email", self.web)).await.unwrap().json().await.unwrap_or(serde_json::Value::Null);
            let found = mails.as_array().into_iter().flatten().rev().find(|m| {
                m["subject"].as_str().is_some_and(|s| s.contains(subject))
                    && m["to"].as_array().into_iter().flatten().any(|t| t["address"].as_str() == Some(to))
            });
            if let Some(m) = found {
                return m["text"].as_str().unwrap_or_default().to_string();
            }
            assert!(tokio::time::Instant::now() < deadline, "no mail to {to} about {subject:?} in MailDev: {mails}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The first link in `text` that contains `needle`.
pub fn link_in(text: &str, needle: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with("http") && w.contains(needle)).map(str::to_string)
}

pub const STRIPE_PUBLISHABLE_KEY: &str = "pk_test_vessel";
pub const STRIPE_SECRET_KEY: &str = "sk_test_vessel";
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_vessel_e2e";

/// localstripe. It listens on every address: the test reaches it on loopback, the panel and
/// the browser on the address the panel listens on ([`LocalStripe::settings`]), so a page on
/// the test network loads Stripe.js from the same network.
pub struct LocalStripe {
    pub port: u16,
    base: String,
    _process: Process,
}

impl LocalStripe {
    pub async fn start() -> LocalStripe {
        let bin = tokio::task::spawn_blocking(|| ensure("ensure-localstripe", "VESSEL_LOCALSTRIPE")).await.unwrap();
        let port = free_port();
        // `--from-scratch`: never reads back the store it pickles to /tmp/localstripe.pickle.
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let process = Process(child);
        wait_listening("localstripe", (Ipv4Addr::LOCALHOST, port)).await;
        LocalStripe { port, base: format!("http://127.0.0.1:{port}"), _process: process }
    }

    /// The panel's `[stripe]` for this server, reached at `addr`.
    pub fn settings(&self, addr: Ipv4Addr) -> panel::billing::stripe::StripeSettings {
        let base = format!("http://{addr}:{}", self.port);
        panel::billing::stripe::StripeSettings {
            secret_key: STRIPE_SECRET_KEY.to_string().into(),
            publishable_key: STRIPE_PUBLISHABLE_KEY.into(),
            webhook_secret: STRIPE_WEBHOOK_SECRET.to_string().into(),
            js_url: format!("{base}/js.stripe.com/v3/"),
            api_base: base,
        }
    }

    /// Points its webhooks at `url`, signed with the panel's secret.
    pub async fn send_webhooks_to(&self, url: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/_config/webhooks/vessel", self.base))
            .form(&[("url", url), ("secret", STRIPE_WEBHOOK_SECRET)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "configuring localstripe's webhook: {}", r.status());
    }

    /// The PaymentIntents it holds.
    pub async fn payment_intents(&self) -> Vec<serde_json::Value> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/v1/payment_intents", self.base))
            .bearer_auth(STRIPE_SECRET_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["data"].as_array().cloned().unwrap_or_default()
    }
}

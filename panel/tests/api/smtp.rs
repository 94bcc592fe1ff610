//! A real SMTP server for tests: PyPI's aiosmtpd (installed with pip when missing), started
//! by each test on a free port with a maildir of its own; the test reads what it received.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The message with quoted-printable soft breaks and `=3D` undone (enough for links).
    pub fn text(&self) -> String {
        self.data.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
    }
    pub fn subject(&self) -> String {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_string()
    }
    /// The first URL in the body that contains `needle`.
    pub fn link(&self, needle: &str) -> Option<String> {
        self.text().split_whitespace().find(|w| w.starts_with("http") && w.contains(needle)).map(str::to_string)
    }
}

/// The Python SMTP server, killed (by its own pid) when the last handle goes.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    maildir: Arc<tempfile::TempDir>,
    _server: Arc<Mutex<Process>>,
}

/// Installs aiosmtpd from PyPI if this machine lacks it (once per test process).
fn ensure_aiosmtpd() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let have = Command::new("python3").args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
        assert!(have.is_ok(), "the mail tests need python3 (for the aiosmtpd SMTP server)");
        if !have.unwrap().success() {
            eprintln!("installing aiosmtpd from PyPI for the mail tests");
            let ok = Command::new("python3").args(["-m", "pip", "install", "--quiet", "aiosmtpd"]).status();
            assert!(ok.is_ok_and(|s| s.success()), "pip install aiosmtpd failed; the mail tests need it");
        }
    });
}

impl SmtpSink {
    /// aiosmtpd (PyPI's SMTP server) on a free loopback port, storing what it accepts in a
    /// maildir of this test's own.
    pub async fn start() -> SmtpSink {
        ensure_aiosmtpd();
        let maildir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd starts");
        let server = Process(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "aiosmtpd did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpSink { port, maildir: Arc::new(maildir), _server: Arc::new(Mutex::new(server)) }
    }

    /// Every message received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(self.maildir.path().join("mail").join(sub)).into_iter().flatten().flatten() {
                let modified = e.metadata().and_then(|m| m.modified()).ok();
                files.push((modified, e.file_name(), e.path()));
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, _, p)| std::fs::read_to_string(p).ok())
            .map(|data| {
                let to = data
                    .lines()
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| l.strip_prefix("X-RcptTo: "))
                    .map(|v| v.split(',').map(|a| a.trim().to_string()).collect())
                    .unwrap_or_default();
                Mail { to, data }
            })
            .collect()
    }

    /// Waits (up to 15 s) for a mail to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(m) = self.mails().into_iter().rev().find(|m| m.to.iter().any(|t| t == to) && m.subject().contains(subject)) {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "no mail to {to} with subject {subject:?}; got {:?}", self.mails());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

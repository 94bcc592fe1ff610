//! A real SMTP server for tests: it speaks enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT) over TCP for lettre to deliver to it, and keeps every message it accepts.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The message with quoted-printable soft breaks and `=3D` undone (enough for links).
    pub fn text(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }
    pub fn subject(&self) -> String {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_string()
    }
    /// The first URL in the body that contains `needle`.
    pub fn link(&self, needle: &str) -> Option<String> {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains(needle))
            .map(str::to_string)
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut to = Vec::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("HELO") || cmd.starts_with("MAIL") || cmd.starts_with("NOOP") {
                            b"250 OK\r\n"
                        } else if cmd.starts_with("RSET") {
                            to.clear();
                            b"250 OK\r\n"
                        } else if cmd.starts_with("RCPT") {
                            to.push(line.trim_end()[8..].trim().trim_matches(['<', '>']).to_string());
                            b"250 OK\r\n"
                        } else if cmd == "DATA" {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                            }
                            store.lock().unwrap().push(Mail { to: std::mem::take(&mut to), data });
                            b"250 queued\r\n"
                        } else if cmd == "QUIT" {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
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

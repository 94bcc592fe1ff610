//! The browser console's remaining promises (issue 13, item 3), end to end with a real panel,
//! a real host in its own network namespace and a real Chromium:
//!
//! * the serial console of a KVM machine takes typed and pasted input in Chromium, and the
//!   machine's answer comes back into the terminal (the project's test guest echoes every byte
//!   it receives on COM1 between its `VESSEL-TICK n` lines);
//! * a console nobody types into ends after the (configured) idle timeout, and typing keeps it
//!   open; the audit row says why it ended.

use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vessel_tests::browser::Browser;
use vessel_tests::console::read_until;
use vessel_tests::e2e::{wait_for, World};

const LOGIN_PASSWORD: &str = "customer login password";

/// A verified customer who can log in with [`LOGIN_PASSWORD`].
async fn customer(w: &World, email: &str) -> Uuid {
    let customer = w.customer(email, 1000).await;
    let hash = panel::accounts::hash_password(&panel::accounts::Password::parse(LOGIN_PASSWORD).unwrap());
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(customer).bind(hash).execute(&w.pool).await.unwrap();
    customer
}

/// The terminal's text without whitespace and without the test guest's ticks: what the guest
/// echoed, in order (the ticks come every few milliseconds, between the echoed bytes).
const ECHOED: &str = "return window.vesselConsole ? window.vesselConsole.text().replace(/\\s+/g, '').replace(/VESSEL-TICK\\d+/g, '') : ''";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_and_pasting_into_the_serial_console_of_a_kvm_machine_in_chromium_comes_back() {
    let mut w = World::new(true).await;
    let mut host = w.add_host_with("h1", 2, 1024, true).await;
    w.serve(&mut host);
    let customer = customer(&w, "kvm-console@example.com").await;
    let inst = w.order_paid_with(customer, "kvm-tiny", "vessel-test-guest", "kvm-console.example.com").await;
    wait_for("the machine to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    let serial = host.dir.join("state/vm").join(inst.to_string()).join("serial.log");

    let b = Browser::start().await;
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        b.c.goto(&format!("{}/login", w.panel_url)).await.unwrap();
        b.fill("email", "kvm-console@example.com").await;
        b.fill("password", LOGIN_PASSWORD).await;
        b.click("main form button[type=submit]").await;
        b.wait_script("the log-in", "return location.pathname", 10, |v| v.as_str() != Some("/login")).await;
        b.c.goto(&format!("{}/servers/{inst}", w.panel_url)).await.unwrap();
        b.click("#open-console").await;
        b.wait_script("the console to connect", "var t = document.getElementById('terminal'); return t ? t.dataset.state : ''", 20, |v| {
            v == "open"
        })
        .await;
        // The machine's own output arrives (its ticks).
        b.wait_script("the machine's serial output", "return window.vesselConsole.text()", 20, |v| {
            v.as_str().is_some_and(|t| t.contains("VESSEL-TICK"))
        })
        .await;
        // Typed: each key goes to the VMM's serial port, the guest echoes it back.
        let area = b.c.find(fantoccini::Locator::Css(".xterm-helper-textarea")).await.expect("the terminal's input");
        area.send_keys("typed-into-the-serial-port").await.unwrap();
        b.wait_script("the typed text echoed by the guest", ECHOED, 20, |v| {
            v.as_str().is_some_and(|t| t.contains("typed-into-the-serial-port"))
        })
        .await;
        // Pasted: a paste event on the terminal (as the browser fires it for Ctrl+V or the
        // context menu) goes the same way.
        b.c.execute(
            "var dt = new DataTransfer(); dt.setData('text/plain', 'pasted-by-the-viewer');
             document.querySelector('.xterm-helper-textarea').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
             return true;",
            vec![],
        )
        .await
        .unwrap();
        b.wait_script("the pasted text echoed by the guest", ECHOED, 20, |v| v.as_str().is_some_and(|t| t.contains("pasted-by-the-viewer")))
            .await;
        b.click("#console-close").await;
        b.wait_script("the console to close", "return document.getElementById('terminal').dataset.state", 10, |v| v == "closed").await;
    })
    .await;
    b.close().await;
    result.expect("the KVM console scenario finishes within 120 s");
    // The bytes really went through the machine: its serial log holds the echo.
    let log = std::fs::read_to_string(&serial).unwrap();
    let echoed: String = log.lines().filter(|l| !l.starts_with("VESSEL-TICK")).collect::<Vec<_>>().join("");
    let echoed: String = echoed.split("VESSEL-TICK").map(|p| p.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')).collect();
    assert!(echoed.contains("typed-into-the-serial-port") && echoed.contains("pasted-by-the-viewer"), "the serial log: {echoed:?}");
    let reason: String = wait_for("the close row", 10, async || {
        sqlx::query_scalar("SELECT details->>'reason' FROM audit_log WHERE action = 'console.close' AND target_id = $1")
            .bind(inst.to_string())
            .fetch_optional(&w.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(reason, "closed by the viewer");
    w.want(inst, "terminated").await;
    wait_for("the machine to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_nobody_types_into_ends_after_the_idle_timeout_and_typing_keeps_it_open() {
    const IDLE: u64 = 3;
    let mut w = World::new_with(true, |s| s.console.idle_timeout_secs = IDLE).await;
    let mut host = w.add_host_with("h1", 2, 2048, true).await;
    w.serve(&mut host);
    let customer = customer(&w, "idle@example.com").await;
    let inst = w.order_paid_with(customer, "burst-s", "busybox", "idle-ct.example.com").await;
    wait_for("the container to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    // The customer's console, as the server page opens it: the page's token and the session.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{}/login", w.panel_url)).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token").to_string();
    let r = http
        .post(format!("{}/login", w.panel_url))
        .form(&[("csrf", csrf.as_str()), ("email", "idle@example.com"), ("password", LOGIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "log-in: {}", r.status());
    let cookie = reqwest::cookie::CookieStore::cookies(&*jar, &w.panel_url.parse().unwrap()).expect("a session cookie");
    let page = http.get(format!("{}/servers/{inst}/console", w.panel_url)).send().await.unwrap().text().await.unwrap();
    let path = page.split("data-ws=\"").nth(1).and_then(|r| r.split('"').next()).expect("the page names its WebSocket");
    let path = path.replace("&#x3d;", "=").replace("&#61;", "=");
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}{path}",
        w.panel_url.replace("http://", "ws://")
    ))
    .unwrap();
    req.headers_mut().insert("cookie", cookie.to_str().unwrap().parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("the console opens");
    read_until(&mut ws, "login:", 20).await.expect("a login prompt");

    // A keystroke every second for twice the timeout: the console stays open.
    let started = std::time::Instant::now();
    let mut last_key = started;
    while started.elapsed() < Duration::from_secs(2 * IDLE) {
        ws.send(Message::Binary(b"\n".to_vec().into())).await.unwrap();
        last_key = std::time::Instant::now();
        read_until(&mut ws, "login:", 5).await.expect("typing keeps the console open");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Then nothing: it ends, cleanly, saying why, about the timeout after the last key.
    let reason = read_until(&mut ws, "never printed", IDLE + 10).await.expect_err("the idle console is closed").reason;
    assert_eq!(reason, format!("idle for {IDLE} s"));
    let quiet = last_key.elapsed();
    assert!(quiet >= Duration::from_millis(IDLE * 1000 - 200), "closed {quiet:?} after the last key, before the timeout");
    let audited: String = wait_for("the close row", 10, async || {
        sqlx::query_scalar("SELECT details->>'reason' FROM audit_log WHERE action = 'console.close' AND target_id = $1")
            .bind(inst.to_string())
            .fetch_optional(&w.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(audited, format!("idle for {IDLE} s"));
    w.want(inst, "terminated").await;
    wait_for("the container to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
}

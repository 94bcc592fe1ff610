//! The console in the browser (issue 13), end to end: a real panel, a real host (TLS, pinned)
//! in its own network namespace, a real busybox container, a real Chromium.
//!
//! * A customer who ordered with a key and a root password opens the console from the server
//!   page, logs in as root, types `hostname` and reads the hostname back from the terminal,
//!   closes it; the audit log holds the session (who, which server, from where, why it ended).
//! * Tokens and sessions: a console token is single-use and expires; another customer's server
//!   is a 404; a WebSocket without the page's login, or with a used or expired token, is
//!   refused; a console open when the server stops ends with the reason; one opened on a
//!   stopped server ends at once, cleanly.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vessel_tests::browser::Browser;
use vessel_tests::console::{self, Ws};
use vessel_tests::e2e::{wait_for, World};

const ROOT_PASSWORD: &str = "console-root-pass-42";
const LOGIN_PASSWORD: &str = "customer login password";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ alice@laptop";

/// A verified customer who can log in with [`LOGIN_PASSWORD`], with a running busybox
/// container ordered with a key and a root password.
async fn running_container(w: &World, email: &str, hostname: &str) -> (Uuid, Uuid) {
    let customer = w.customer(email, 1000).await;
    let hash = panel::accounts::hash_password(&panel::accounts::Password::parse(LOGIN_PASSWORD).unwrap());
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(customer).bind(hash).execute(&w.pool).await.unwrap();
    let access = vessel_core::Access {
        ssh_keys: vec![vessel_core::SshPublicKey::parse(KEY).unwrap()],
        root_password_hash: Some(panel::access::hash_password(ROOT_PASSWORD.into()).await.unwrap()),
    };
    let clock = panel::clock::SystemClock;
    let req = panel::orders::OrderRequest {
        plan_code: "burst-s".into(),
        cycle: panel::plans::BillingCycle::Monthly,
        os_template: "busybox".into(),
        hostname: hostname.into(),
        coupon: None,
    };
    let placed = panel::orders::place_order_with_access(&w.pool, &clock, customer, req, &access).await.unwrap();
    panel::billing::payments::pay_invoice_with_credit(&w.pool, &clock, customer, placed.invoice_id).await.unwrap();
    let inst: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1")
        .bind(placed.subscription_id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    wait_for("the container to run", 120, async || (w.observed(inst).await == "running").then_some(())).await;
    (customer, inst)
}

/// An audit row as the tests read it: action, actor id, actor kind, address, details.
type AuditRow = (String, Option<Uuid>, String, Option<String>, serde_json::Value);

async fn console_text(b: &Browser, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let v =
        b.wait_script(what, "return window.vesselConsole ? window.vesselConsole.text() : ''", secs, |v| v.as_str().is_some_and(&ok)).await;
    v.as_str().unwrap_or_default().to_string()
}

/// `login` turns the echo off just after printing its prompt: a person types later than that,
/// and so do the tests (a password typed sooner would be echoed by the pty).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn type_in(b: &Browser, text: &str) {
    let area = b.c.find(fantoccini::Locator::Css(".xterm-helper-textarea")).await.expect("the terminal's input");
    area.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_logs_in_on_the_console_of_a_running_container_in_chromium() {
    let mut w = World::new(true).await;
    let mut host = w.add_host_with("h1", 2, 2048, true).await;
    w.serve(&mut host);
    let hostname = "console-ct.example.com";
    let (customer, inst) = running_container(&w, "console@example.com", hostname).await;

    let b = Browser::start().await;
    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        b.c.goto(&format!("{}/login", w.panel_url)).await.unwrap();
        b.fill("email", "console@example.com").await;
        b.fill("password", LOGIN_PASSWORD).await;
        b.click("main form button[type=submit]").await;
        b.wait_script("the log-in", "return location.pathname", 10, |v| v.as_str() != Some("/login")).await;
        b.c.goto(&format!("{}/servers/{inst}", w.panel_url)).await.unwrap();
        b.click("#open-console").await;
        b.wait_script("the console to connect", "var t = document.getElementById('terminal'); return t ? t.dataset.state : ''", 20, |v| {
            v == "open"
        })
        .await;
        // The page never names the host.
        let html = b.c.source().await.unwrap();
        assert!(!html.contains(&host.ns.addr.to_string()) && !html.contains(":7443"), "the host's address is not given to the browser");
        console_text(&b, "the login prompt", 20, |t| t.contains("login:")).await;
        type_in(&b, "root\n").await;
        console_text(&b, "the password prompt", 20, |t| t.contains("Password:")).await;
        settle().await;
        type_in(&b, &format!("{ROOT_PASSWORD}\n")).await;
        // Logged in: a shell prompt after the password.
        console_text(&b, "a shell prompt", 20, |t| t.lines().any(|l| l.trim_end().ends_with('#'))).await;
        type_in(&b, "hostname\n").await;
        let text = console_text(&b, "the hostname typed back", 20, |t| t.lines().any(|l| l.trim() == hostname)).await;
        assert!(!text.contains(ROOT_PASSWORD), "the password is not echoed: {text}");
        b.screenshot(&shots.join("console-01-logged-in.png")).await;
        b.click("#console-close").await;
        b.wait_script("the console to close", "return document.getElementById('terminal').dataset.state", 10, |v| v == "closed").await;
    })
    .await;
    b.close().await;
    result.expect("the console scenario finishes within 120 s");

    // Audited: who, which server, from where, and how it ended.
    let rows: Vec<AuditRow> = wait_for("the audit rows", 10, async || {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT action, actor_id, actor_kind, host(remote_addr), details FROM audit_log WHERE action LIKE 'console.%' AND target_id = $1 ORDER BY id",
        )
        .bind(inst.to_string())
        .fetch_all(&w.pool)
        .await
        .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(rows[0].0, "console.open");
    assert_eq!(rows[1].0, "console.close");
    for r in &rows {
        assert_eq!(r.1, Some(customer));
        assert_eq!(r.2, "customer");
        assert_eq!(r.3.as_deref(), Some(w.net.gateway().to_string().as_str()), "from where: the browser's address");
    }
    assert_eq!(rows[1].4["reason"], "closed by the viewer", "{}", rows[1].4);
    assert!(rows[1].4["bytes_in"].as_u64().unwrap() > 0 && rows[1].4["bytes_out"].as_u64().unwrap() > 0, "{}", rows[1].4);
    // Only the hash of the token is stored, and it is used up.
    let (hash, used): (String, bool) =
        sqlx::query_as("SELECT token_sha256, used_at IS NOT NULL FROM console_tokens WHERE instance_id = $1")
            .bind(inst)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(hash.len(), 64);
    assert!(used);
}

/// A logged-in HTTP client (cookie jar) for `email`, and its cookie header for WebSockets.
async fn logged_in(w: &World, email: &str) -> (reqwest::Client, String) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{}/login", w.panel_url)).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token").to_string();
    let r = http
        .post(format!("{}/login", w.panel_url))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", LOGIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "log-in: {}", r.status());
    let url: reqwest::Url = w.panel_url.parse().unwrap();
    let cookie = reqwest::cookie::CookieStore::cookies(&*jar, &url).expect("a session cookie").to_str().unwrap().to_string();
    (http, cookie)
}

/// The WebSocket path on a console page.
async fn page_socket(http: &reqwest::Client, w: &World, inst: Uuid) -> String {
    let r = http.get(format!("{}/servers/{inst}/console", w.panel_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    let page = r.text().await.unwrap();
    page.split("data-ws=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page names its WebSocket")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
}

/// Opens the panel's console WebSocket; `Err(status)` when refused before upgrading.
async fn open(w: &World, path: &str, cookie: Option<&str>) -> Result<Ws, u16> {
    let url = format!("{}{path}", w.panel_url.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("connecting to the console: {e}"),
    }
}

/// Reads to the close frame; returns its reason.
async fn closed_with(ws: &mut Ws, secs: u64) -> String {
    tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(f)) => return f.map(|f| f.reason.to_string()).unwrap_or_default(),
                Ok(_) => {}
                Err(e) => panic!("the console did not end cleanly: {e}"),
            }
        }
        panic!("the console ended without a close frame")
    })
    .await
    .unwrap_or_else(|_| panic!("the console did not close within {secs} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_tokens_are_single_use_short_lived_and_bound_to_their_customer() {
    let mut w = World::new(true).await;
    let mut host = w.add_host_with("h1", 2, 2048, true).await;
    w.serve(&mut host);
    let (_customer, inst) = running_container(&w, "owner@example.com", "tokens-ct.example.com").await;
    let (http, cookie) = logged_in(&w, "owner@example.com").await;

    // Another customer: the server's console page is a 404, like its server page.
    let other = w.customer("other@example.com", 1).await;
    let hash = panel::accounts::hash_password(&panel::accounts::Password::parse(LOGIN_PASSWORD).unwrap());
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(other).bind(hash).execute(&w.pool).await.unwrap();
    let (other_http, other_cookie) = logged_in(&w, "other@example.com").await;
    assert_eq!(other_http.get(format!("{}/servers/{inst}/console", w.panel_url)).send().await.unwrap().status(), 404);
    assert_eq!(other_http.get(format!("{}/servers/{}/console", w.panel_url, Uuid::new_v4())).send().await.unwrap().status(), 404);

    // The owner's token works once: the login prompt comes, typed input reaches the container.
    let path = page_socket(&http, &w, inst).await;
    // Without the owner's login (no session, or another customer's), the page's token is refused.
    assert_eq!(open(&w, &path, None).await.err(), Some(401), "no session");
    let path = page_socket(&http, &w, inst).await;
    assert_eq!(open(&w, &path, Some(&other_cookie)).await.err(), Some(401), "another customer's session");
    let path = page_socket(&http, &w, inst).await;
    let mut ws = open(&w, &path, Some(&cookie)).await.expect("the owner's console opens");
    ws.send(Message::Text(r#"{"resize":{"cols":100,"rows":30}}"#.into())).await.unwrap();
    console::expect(&mut ws, "login:").await;
    // Single use: the same token again is refused, even with the owner's session.
    assert_eq!(open(&w, &path, Some(&cookie)).await.err(), Some(403), "a used token");
    // A token guessed or mangled is refused too.
    assert_eq!(open(&w, "/console/ws?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Some(&cookie)).await.err(), Some(403));
    ws.send(Message::Binary(b"root\n".to_vec().into())).await.unwrap();
    console::expect(&mut ws, "Password:").await;
    settle().await;
    ws.send(Message::Binary(format!("{ROOT_PASSWORD}\n").into_bytes().into())).await.unwrap();
    console::expect(&mut ws, "#").await;
    // The pty follows the viewer's size.
    ws.send(Message::Binary(b"stty size\n".to_vec().into())).await.unwrap();
    console::expect(&mut ws, "30 100").await;

    // Expired: a token not used within its life is refused.
    let path2 = page_socket(&http, &w, inst).await;
    sqlx::query("UPDATE console_tokens SET created_at = now() - interval '10 minutes', expires_at = now() - interval '1 second' WHERE used_at IS NULL")
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(open(&w, &path2, Some(&cookie)).await.err(), Some(403), "an expired token");

    // The server stops while the console is open: it ends, cleanly, saying why.
    w.want(inst, "stopped").await;
    let reason = closed_with(&mut ws, 60).await;
    assert!(reason.contains("stopped") || reason.contains("ended"), "{reason:?}");
    wait_for("the server to stop", 60, async || (w.observed(inst).await == "stopped").then_some(())).await;

    // A console opened on a stopped server ends at once, cleanly, saying so.
    let path3 = page_socket(&http, &w, inst).await;
    let mut ws = open(&w, &path3, Some(&cookie)).await.expect("the upgrade itself succeeds");
    assert_eq!(closed_with(&mut ws, 10).await, "the server is not running");

    // Every session is audited, refused ones included (3 opened after the token checks).
    let opens: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'console.open' AND target_id = $1")
        .bind(inst.to_string())
        .fetch_one(&w.pool)
        .await
        .unwrap();
    let closes: Vec<String> = wait_for("the close rows", 10, async || {
        let c: Vec<String> =
            sqlx::query_scalar("SELECT details->>'reason' FROM audit_log WHERE action = 'console.close' AND target_id = $1 ORDER BY id")
                .bind(inst.to_string())
                .fetch_all(&w.pool)
                .await
                .unwrap();
        (c.len() == 2).then_some(c)
    })
    .await;
    assert_eq!(opens, 2);
    assert_eq!(closes[1], "the server is not running");
}

/// The reseller's way (issue 13) on a real Debian (`debian-12`: systemd, OpenSSH): a server
/// created through the API with an SSH key lets that key in over SSH from another network
/// namespace (the host's, through its bridge); a password reset through the API then lets
/// root in with the new password on the console (an API console token, no panel login).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resellers_key_logs_in_over_ssh_and_a_reset_password_logs_in_on_the_console() {
    let mut w = World::new(true).await;
    let mut host = w.add_host_with("h1", 2, 3072, true).await;
    // The debian-12 template beside busybox, built (or found cached) by the project's script.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../provisioner/scripts/build-template-debian-12.sh");
    let built = std::process::Command::new("bash").arg(&script).arg(host.dir.join("templates")).output().unwrap();
    assert!(built.status.success(), "debian-12 template: {}", String::from_utf8_lossy(&built.stderr));
    w.serve(&mut host);
    sqlx::query("INSERT INTO os_templates (name, display_name, for_containers, for_kvm) VALUES ('debian-12', 'Debian 12', true, false) ON CONFLICT DO NOTHING")
        .execute(&w.pool)
        .await
        .unwrap();
    let reseller: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'r@resell.example', 'R', 'active', now()) RETURNING id",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let token = panel::api_keys::create(&w.pool, reseller, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let r = http.post(format!("{}{path}", w.panel_url)).bearer_auth(&token).json(&body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };

    // A key pair of the reseller's customer.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "customer@example", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "ssh-keygen (openssh-client): {made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let (s, c) = post("/api/v1/customers", serde_json::json!({"email": "end@example.com", "name": "End Customer"})).await;
    assert_eq!(s, 201, "{c}");
    let hostname = "ssh-ct.example.com";
    let (s, v) = post(
        "/api/v1/servers",
        serde_json::json!({"customer_id": c["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": hostname, "ssh_keys": [public.trim()]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("root_password").is_none(), "a key was given: nothing generated");
    let inst: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    wait_for("the Debian container to run", 180, async || (w.observed(inst).await == "running").then_some(())).await;
    let addr: String =
        sqlx::query_scalar("SELECT host(address) FROM ip_addresses WHERE instance_id = $1").bind(inst).fetch_one(&w.pool).await.unwrap();

    // SSH from the host's namespace to the container's address: the key gets in.
    let ssh = |extra: &[&str], cmd: &str| {
        let mut c = host.ns.command("ssh");
        c.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ]);
        c.args(extra).arg(format!("root@{addr}")).arg(cmd);
        c.output().unwrap()
    };
    let key_arg = key.to_string_lossy().to_string();
    let got = wait_for("sshd to let the key in", 120, async || {
        let o = ssh(&["-i", &key_arg, "-o", "IdentitiesOnly=yes"], "hostname");
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
    .await;
    assert_eq!(got, hostname);
    // Without the key: refused.
    let other = keys.path().join("other");
    std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().unwrap();
    assert!(!ssh(&["-i", &other.to_string_lossy(), "-o", "IdentitiesOnly=yes"], "true").status.success(), "another key is refused");

    // The reseller resets the password; the host applies it.
    let password = "reset-by-the-reseller-77";
    let (s, v) = post(&format!("/api/v1/servers/{inst}/reset-password"), serde_json::json!({"root_password": password})).await;
    assert_eq!(s, 202, "{v}");
    wait_for("the reset to reach the host", 60, async || {
        let st: Option<String> = sqlx::query_scalar(
            "SELECT status::text FROM jobs WHERE kind = 'instance.reset_password' AND instance_id = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(inst)
        .fetch_optional(&w.pool)
        .await
        .unwrap();
        (st.as_deref() == Some("succeeded")).then_some(())
    })
    .await;

    // The console, through an API token (no panel login): root with the new password.
    let (s, t) = post(&format!("/api/v1/servers/{inst}/console"), serde_json::json!(null)).await;
    assert_eq!(s, 201, "{t}");
    let mut ws = open(&w, t["websocket_path"].as_str().unwrap(), None).await.expect("the API token opens the console");
    console::expect(&mut ws, "login:").await;
    ws.send(Message::Binary(b"root\n".to_vec().into())).await.unwrap();
    console::expect(&mut ws, "Password:").await;
    settle().await;
    ws.send(Message::Binary(format!("{password}\n").into_bytes().into())).await.unwrap();
    console::expect(&mut ws, "# ").await;
    ws.send(Message::Binary(b"hostname\n".to_vec().into())).await.unwrap();
    let seen = console::expect(&mut ws, &format!("{hostname}\r\n")).await;
    assert!(!seen.contains(password), "the password is not echoed");
    ws.close(None).await.ok();
    let (kind, via): (String, String) = wait_for("the console's audit", 10, async || {
        sqlx::query_as("SELECT actor_kind, details->>'via' FROM audit_log WHERE action = 'console.close' AND target_id = $1")
            .bind(inst.to_string())
            .fetch_optional(&w.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((kind.as_str(), via.as_str()), ("api_key", "api"));
}

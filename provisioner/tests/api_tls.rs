//! TLS serving (with a self-signed certificate made here) and the join flow against a tiny
//! fake panel.

mod api_support;

use actix_web::{web, App, HttpResponse, HttpServer};
use api_support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vessel_core::signing::HostSecret;
use vessel_core::wire::{JoinRequest, JoinResponse};

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_served_over_tls_when_a_certificate_is_configured() {
    require_kvm();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let d = Daemon::start(Options { tls: Some((ck.cert.pem(), ck.key_pair.serialize_pem())), ..Options::default() });
    assert!(d.url.starts_with("https://127.0.0.1:"), "{}", d.url);

    // Signed, over TLS, trusting that certificate: works.
    let (status, host) = d.call("GET", "/v1/host", None).await;
    assert_eq!(status, 200, "{host}");
    assert_eq!(host["kinds"], serde_json::json!(["container", "kvm"]));

    // A client that does not trust the certificate cannot talk to it at all.
    let untrusting = provisioner::client::http_client(None, Duration::from_secs(10)).unwrap();
    assert!(untrusting.get(format!("{}/v1/host", d.url)).send().await.is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = d.url.replace("https://", "http://");
    let r = reqwest::Client::new().get(format!("{plain}/v1/host")).timeout(Duration::from_secs(10)).send().await;
    assert!(r.is_err() || r.unwrap().status().as_u16() == 400, "plain HTTP is not served");
}

/// What the fake panel saw.
#[derive(Default)]
struct Seen {
    requests: Vec<JoinRequest>,
}

#[test]
fn join_stores_the_panels_secret_and_serve_then_accepts_it() {
    require_kvm();
    let panel_secret = random_secret();
    let host_id = uuid::Uuid::new_v4();
    let seen = Arc::new(Mutex::new(Seen::default()));

    // The fake panel: accepts token "good-token" once.
    let (tx, rx) = std::sync::mpsc::channel();
    let seen2 = seen.clone();
    let answer = JoinResponse { host_id, secret: panel_secret.to_base64() };
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let seen = seen2.clone();
                let answer = answer.clone();
                App::new().route(
                    "/hosts/join",
                    web::post().to(move |body: web::Json<JoinRequest>| {
                        let seen = seen.clone();
                        let answer = answer.clone();
                        async move {
                            let ok = body.token == "good-token";
                            seen.lock().unwrap().requests.push(body.into_inner());
                            if ok {
                                HttpResponse::Ok().json(answer)
                            } else {
                                HttpResponse::Forbidden().body("bad token")
                            }
                        }
                    }),
                )
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    let panel = format!("http://{}", rx.recv_timeout(Duration::from_secs(30)).unwrap());

    // A daemon set up by the harness with TLS as in production (no certificate configured:
    // its own self-signed one), whose secret we throw away: join writes the real one.
    let mut d = Daemon::start(Options { plain_http: false, ..Options::default() });
    assert!(d.url.starts_with("https://"), "TLS is the default: {}", d.url);
    d.kill9();
    let secret_path = d.state_dir.join("host.secret");
    std::fs::remove_file(&secret_path).unwrap();
    let join_with = |token: &str, force: bool, allow_http: bool, api_url: &str| {
        let mut c = Command::new(BIN);
        c.args(["join", "--config"]).arg(&d.config_path).args([
            "--panel-url",
            &panel,
            "--token",
            token,
            "--name",
            "host-a",
            "--api-url",
            api_url,
        ]);
        if force {
            c.arg("--force");
        }
        // The fake panel speaks plain HTTP on loopback: this test says so explicitly.
        if allow_http {
            c.arg("--allow-http-panel");
        }
        c.output().unwrap()
    };
    let join = |token: &str, force: bool| join_with(token, force, true, "https://10.0.0.5:8443");

    // A plain-HTTP panel URL is refused unless allowed explicitly: nothing sent, nothing written.
    let out = join_with("good-token", false, false, "https://10.0.0.5:8443");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plain HTTP") && stderr.contains("--allow-http-panel"), "{stderr}");
    // An API URL that is not what the daemon serves (TLS by default) is refused too.
    let out = join_with("good-token", false, true, "http://10.0.0.5:8443");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(seen.lock().unwrap().requests.is_empty(), "the panel heard nothing of the refused joins");
    assert!(!secret_path.exists());

    // A refused token: an error, and no secret written.
    let out = join("bad-token", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!secret_path.exists());

    let out = join("good-token", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&host_id.to_string()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("good-token") && !stderr.contains(&panel_secret.to_base64()), "secrets are never logged: {stderr}");
    let mode = std::fs::metadata(&secret_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = HostSecret::from_base64(&std::fs::read_to_string(&secret_path).unwrap()).unwrap();
    assert_eq!(stored, panel_secret);
    assert_eq!(std::fs::read_to_string(d.state_dir.join("host.id")).unwrap(), host_id.to_string());
    {
        let seen = seen.lock().unwrap();
        let r = seen.requests.last().unwrap();
        assert_eq!((r.name.as_str(), r.api_url.as_str()), ("host-a", "https://10.0.0.5:8443"));
        assert_eq!(r.capacity, d.capacity);
        assert!(r.supports_kvm);
        // The fingerprint of the certificate the daemon serves, for the panel to pin.
        let cert = d.state_dir.join("tls/cert.pem");
        assert_eq!(r.tls_cert_sha256.as_deref(), Some(provisioner::join::cert_sha256(&cert).unwrap().as_str()));
        assert_eq!(std::fs::metadata(d.state_dir.join("tls/key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Joining again needs --force.
    let out = join("good-token", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already joined"));

    // The daemon now answers requests signed with the panel's secret, and only those.
    d.secret = panel_secret;
    d.spawn();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, _) = rt.block_on(d.call("GET", "/v1/host", None));
    assert_eq!(status, 200);
    let stale = provisioner::client::HostClient::new(
        &d.url,
        random_secret(),
        provisioner::client::http_client(d.ca_pem.as_deref(), Duration::from_secs(10)).unwrap(),
    );
    let (status, _) = rt.block_on(stale.json::<()>(reqwest::Method::GET, "/v1/host", None)).unwrap();
    assert_eq!(status, 401);
}

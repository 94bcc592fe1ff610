//! What the signed HTTP API costs on top of the work it fronts, measured in one run:
//! * a signed `GET /v1/host` round trip over plain HTTP and over TLS (kept-alive connection),
//!   against the same `Service::report` called in-process (the yardstick);
//! * sign + verify of one request alone;
//! * create + start of a KVM test guest and of a busybox container through the API, against the same two steps on the
//!   service in-process (the yardstick), and the stop + destroy that follow.
//!
//! Run: `cargo bench -p provisioner --bench api`.

#[path = "../tests/api_support/mod.rs"]
mod api_support;

use api_support::*;
use provisioner::config::DaemonConfig;
use provisioner::daemon::build_service_with;
use serde_json::json;
use std::time::{Duration, Instant};
use vessel_core::signing::{sign, unix_now, Presented, Verifier};
use vessel_core::HostAction;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn host_round_trips(d: &Daemon, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, _) = d.call("GET", "/v1/host", None).await;
        assert_eq!(status, 200);
        out.push(t.elapsed());
    }
    out
}

fn main() {
    require_kvm();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        const N: usize = 300;
        let plain = Daemon::start(Options::default());
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let tls = Daemon::start(Options { tls: Some((ck.cert.pem(), ck.key_pair.serialize_pem())), ..Options::default() });
        // Warm up connections.
        host_round_trips(&plain, 20).await;
        host_round_trips(&tls, 20).await;
        let http = host_round_trips(&plain, N).await;
        let https = host_round_trips(&tls, N).await;

        let mut svc_daemon = Daemon::start(Options::default());
        svc_daemon.kill9();
        let cfg = DaemonConfig::load(Some(&svc_daemon.config_path)).unwrap();
        let service = build_service_with(&cfg, BIN.into()).unwrap();
        let mut direct = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            service.report().await.unwrap();
            direct.push(t.elapsed());
        }

        let secret = random_secret();
        let verifier = Verifier::new(secret.clone());
        let body = vec![b'x'; 600];
        let t = Instant::now();
        for i in 0..10_000 {
            let h = sign(&secret, "PUT", "/v1/instances/0b8e5d1e-aaaa-4bbb-8ccc-0123456789ab", &body, unix_now(), &format!("n{i}"));
            let p = Presented { timestamp: Some(&h.timestamp), nonce: Some(&h.nonce), signature: Some(&h.signature) };
            verifier.verify("PUT", "/v1/instances/0b8e5d1e-aaaa-4bbb-8ccc-0123456789ab", p, &body).unwrap();
        }
        let sign_verify = t.elapsed() / 10_000;

        println!("GET /v1/host, {N} requests each (median / p99):");
        println!("  in-process Service::report (yardstick): {:.3} / {:.3} ms", ms(median(direct.clone())), ms(p99(direct.clone())));
        println!("  signed over HTTP:                        {:.3} / {:.3} ms", ms(median(http.clone())), ms(p99(http.clone())));
        println!("  signed over TLS:                         {:.3} / {:.3} ms", ms(median(https.clone())), ms(p99(https.clone())));
        println!(
            "  API overhead: HTTP +{:.3} ms, TLS +{:.3} ms over the in-process call",
            ms(median(http.clone())) - ms(median(direct.clone())),
            ms(median(https.clone())) - ms(median(direct.clone()))
        );
        println!("sign + verify of one request (600-byte body): {:.1} µs", sign_verify.as_secs_f64() * 1e6);

        // KVM create + start: through the API vs in-process, alternating.
        const M: usize = 7;
        let (mut api_times, mut svc_times, mut api_teardown, mut svc_teardown) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..M {
            let a = spec(kvm_plan(1, 64, 2.0));
            let path = format!("/v1/instances/{}", a.id);
            let t = Instant::now();
            assert_eq!(plain.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await.0, 201);
            assert_eq!(plain.call("POST", &format!("{path}/actions"), Some(json!({"action": "start"}))).await.0, 200);
            api_times.push(t.elapsed());
            let t = Instant::now();
            assert_eq!(plain.call("POST", &format!("{path}/actions"), Some(json!({"action": "stop"}))).await.0, 200);
            assert_eq!(plain.call("DELETE", &path, None).await.0, 204);
            api_teardown.push(t.elapsed());

            let b = spec(kvm_plan(1, 64, 2.0));
            let t = Instant::now();
            service.create(b.clone()).await.unwrap();
            service.act(b.id, HostAction::Start).await.unwrap();
            svc_times.push(t.elapsed());
            let t = Instant::now();
            service.act(b.id, HostAction::Stop).await.unwrap();
            service.destroy(b.id).await.unwrap();
            svc_teardown.push(t.elapsed());
        }
        let (api, svc) = (median(api_times), median(svc_times));
        println!("KVM test guest (1 vCPU, 64 MiB), {M} each, medians:");
        println!("  create + start in-process (yardstick): {:.1} ms", ms(svc));
        println!(
            "  create + start through the API:        {:.1} ms  (ratio {:.3}, +{:.1} ms)",
            ms(api),
            ms(api) / ms(svc),
            ms(api) - ms(svc)
        );
        println!("  stop + destroy in-process / API:       {:.1} / {:.1} ms", ms(median(svc_teardown)), ms(median(api_teardown)));

        // The same for a busybox container.
        let plan = vessel_core::PlanResources::try_from(vessel_core::resources::ResourceSpec {
            kind: vessel_core::InstanceKind::Container,
            vcpus: 1,
            memory_guaranteed_mib: Some(64),
            memory_burst_mib: 128,
            swap_mib: 0,
            disk_gib: 1,
            cpu_ratio: 4.0,
            memory_ratio: 1.5,
            disk_ratio: 1.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap();
        let (mut api_times, mut svc_times) = (Vec::new(), Vec::new());
        for _ in 0..M {
            let mut a = spec(plan.clone());
            a.template = "busybox".into();
            let path = format!("/v1/instances/{}", a.id);
            let t = Instant::now();
            assert_eq!(plain.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await.0, 201);
            assert_eq!(plain.call("POST", &format!("{path}/actions"), Some(json!({"action": "start"}))).await.0, 200);
            api_times.push(t.elapsed());
            assert_eq!(plain.call("DELETE", &path, None).await.0, 204);

            let mut b = spec(plan.clone());
            b.template = "busybox".into();
            let t = Instant::now();
            service.create(b.clone()).await.unwrap();
            service.act(b.id, HostAction::Start).await.unwrap();
            svc_times.push(t.elapsed());
            service.destroy(b.id).await.unwrap();
        }
        let (api, svc) = (median(api_times), median(svc_times));
        println!("busybox container (1 vCPU, 64/128 MiB, 1 GiB disk), {M} each, medians:");
        println!("  create + start in-process (yardstick): {:.1} ms", ms(svc));
        println!(
            "  create + start through the API:        {:.1} ms  (ratio {:.3}, +{:.1} ms)",
            ms(api),
            ms(api) / ms(svc),
            ms(api) - ms(svc)
        );
    });
}

//! The Grafana dashboard (`ops/grafana/vessel.json`) asks only for what exists: a real panel
//! and a real provisioner (in its namespace, TLS by default) with a VPS running on it are
//! scraped, and every metric name each panel's query uses, with every label it selects on,
//! groups by or shows in its legend, is in one of the two scrapes. The job runners' latency
//! and failures are measured by the process that runs the jobs: a `panel worker` exports them
//! on its own listener.

use std::collections::{BTreeMap, BTreeSet};
use vessel_tests::e2e::{wait_for, World};

/// metric name → the label names seen on it.
type Scrape = BTreeMap<String, BTreeSet<String>>;

/// Parses the Prometheus text format's sample lines (`name{a="x",b="y"} value`).
fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, labels) = match line.find('{') {
            Some(i) => {
                let end = line.rfind('}').expect("a closed label set");
                (&line[..i], &line[i + 1..end])
            }
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let set = out.entry(name.to_string()).or_default();
        // Label values here are ids, routes, kinds: no quotes or commas inside them.
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            set.insert(pair.split('=').next().unwrap().trim().to_string());
        }
    }
    out
}

fn idents(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// (metric names, label names) one query uses: its `vessel_*` names; the labels in its
/// `{…}` matchers, its `by (…)` clauses and the legend's `{{…}}`.
fn wanted(expr: &str, legend: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let names: BTreeSet<String> = idents(expr).into_iter().filter(|w| w.starts_with("vessel_")).collect();
    let mut labels = BTreeSet::new();
    for (open, close) in [("{", "}"), ("by (", ")")] {
        let mut rest = expr;
        while let Some(i) = rest.find(open) {
            let inner = &rest[i + open.len()..];
            let end = inner.find(close).expect("a closed group");
            for part in inner[..end].split(',') {
                let label = part.split(['=', '!', '~']).next().unwrap().trim();
                if !label.is_empty() {
                    labels.insert(label.to_string());
                }
            }
            rest = &inner[end..];
        }
    }
    let mut rest = legend;
    while let Some(i) = rest.find("{{") {
        let end = rest[i..].find("}}").expect("a closed legend label") + i;
        labels.insert(rest[i + 2..end].trim().to_string());
        rest = &rest[end..];
    }
    // Histogram buckets' `le`, and what Prometheus adds to every series from the target.
    labels.retain(|l| !["le", "instance", "job"].contains(&l.as_str()));
    (names, labels)
}

async fn scrape(url: &str) -> Scrape {
    let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("scraping {url}: {e}"));
    assert_eq!(resp.status(), 200, "{url}");
    parse(&resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_and_label_the_dashboard_queries_is_scraped() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/grafana/vessel.json")).unwrap())
            .unwrap();
    let mut w = World::new(true).await;
    let mut h = w.add_host("metrics-host", 2, 1024).await;
    w.serve(&mut h);
    let customer = w.customer("metrics@example.com", 10_000).await;
    let vm = w.order_paid(customer, "kvm-tiny-shared", "metrics.example.com").await;
    wait_for("the VPS to run", 90, async || (w.observed(vm).await == "running").then_some(())).await;
    // The reconciler has heard from the host, and someone used the panel's web side.
    wait_for("the host to be reachable", 30, async || {
        let r: String =
            sqlx::query_scalar("SELECT reachability::text FROM hosts WHERE id = $1").bind(h.id).fetch_one(&w.pool).await.unwrap();
        (r == "reachable").then_some(())
    })
    .await;
    let health = reqwest::get(format!("{}/healthz", w.panel_url)).await.unwrap();
    assert_eq!(health.status(), 200);

    let panel = scrape(&w.panel_metrics_url).await;
    let host = scrape(&h.metrics_url).await;
    // The VPS is on the host's endpoint by its id, with its guarantee, burst and use.
    let vps_line = reqwest::get(&h.metrics_url).await.unwrap().text().await.unwrap();
    for t in ["guarantee", "burst", "used"] {
        assert!(
            vps_line.lines().any(|l| l.starts_with("vessel_instance_memory_bytes{")
                && l.contains(&format!("vps=\"{vm}\""))
                && l.contains(&format!("type=\"{t}\""))),
            "the VPS's memory {t} is reported"
        );
    }
    // The panel's HTTP metric names route patterns, not paths with ids in them.
    assert!(panel["vessel_http_request_duration_seconds_count"].contains("route"));

    let mut all = panel.clone();
    for (k, v) in host {
        all.entry(k).or_default().extend(v);
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let (expr, legend) = (t["expr"].as_str().unwrap(), t["legendFormat"].as_str().unwrap_or(""));
            let (names, labels) = wanted(expr, legend);
            assert!(!names.is_empty(), "a query with no vessel metric: {expr}");
            for n in &names {
                match all.get(n) {
                    None => missing.push(format!("{n} (in {expr})")),
                    Some(have) => checked += 1 + have.len(),
                }
            }
            // Every label the query needs is on at least one of its metrics (a ratio's two
            // sides share theirs; a `by` over a label no side has would be empty).
            for l in &labels {
                if !names.iter().any(|n| all.get(n).is_some_and(|have| have.contains(l))) {
                    missing.push(format!("label {l} on {names:?} (in {expr})"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "the dashboard asks for what is not scraped:\n{}", missing.join("\n"));
    assert!(checked > 40, "the dashboard's queries were read ({checked} checks)");

    w.want(vm, "terminated").await;
    let hc = w.host_client(&h);
    wait_for("the host to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
}

/// `panel worker` (the job runners in a process of their own, no HTTP) serves the job metrics
/// it measures on its own `[metrics] listen`: after it ran a VPS's jobs, its scrape has
/// `vessel_job_duration_seconds{kind,outcome}` for them and a failure counter for every kind,
/// and not the database's gauges (`panel serve` exports those; twice would double them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panel_worker_exports_the_job_metrics_it_measures() {
    use std::io::BufRead;
    let mut w = World::new(false).await;
    let mut h = w.add_host("worker-metrics", 2, 1024).await;
    w.serve(&mut h);
    let mut child = std::process::Command::new(vessel_tests::netns::workspace_binary("panel").unwrap())
        .arg("worker")
        .env("DATABASE_URL", &w.db_url)
        .env("VESSEL__METRICS__LISTEN", "127.0.0.1:0")
        .env("VESSEL__ORCHESTRATION__RECONCILE_INTERVAL_SECS", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("panel worker runs");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _worker = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("worker metrics on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the worker prints where its metrics are");

    let customer = w.customer("worker-metrics@example.com", 10_000).await;
    let vm = w.order_paid(customer, "kvm-tiny-shared", "worker-metrics.example.com").await;
    wait_for("the worker to run the VPS", 90, async || (w.observed(vm).await == "running").then_some(())).await;
    // The instance is observed running from inside its job, a moment before the job itself is
    // marked succeeded (and measured): wait for that too.
    let ran: Vec<String> = wait_for("the worker to finish the VPS's jobs", 30, async || {
        let ran: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kind FROM jobs WHERE instance_id = $1 AND status = 'succeeded'
              AND NOT EXISTS (SELECT 1 FROM jobs WHERE instance_id = $1 AND status IN ('queued', 'running'))",
        )
        .bind(vm)
        .fetch_all(&w.pool)
        .await
        .unwrap();
        (!ran.is_empty()).then_some(ran)
    })
    .await;

    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for kind in &ran {
        let count = text
            .lines()
            .find(|l| {
                l.starts_with("vessel_job_duration_seconds_count{")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("outcome=\"done\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(count.is_some_and(|c| c >= 1.0), "the worker's scrape has the {kind} job it ran:\n{text}");
    }
    let scrape = parse(&text);
    assert!(scrape["vessel_job_failures_total"].contains("kind"), "{text}");
    for kind in panel::jobs::Job::KINDS {
        assert!(text.contains(&format!("vessel_job_failures_total{{kind=\"{kind}\"}}")), "no failure counter for {kind}:\n{text}");
    }
    assert!(!scrape.contains_key("vessel_jobs_queued"), "the database's gauges are panel serve's to export:\n{text}");

    w.want(vm, "terminated").await;
    let hc = w.host_client(&h);
    wait_for("the host to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
}

#[test]
fn the_query_reader_finds_names_and_labels() {
    let (n, l) = wanted("sum by (le, route) (rate(vessel_x_bucket{kind=~\"a|b\"}[5m])) / vessel_y", "{{host}} {{ resource }}");
    assert_eq!(n, BTreeSet::from(["vessel_x_bucket".to_string(), "vessel_y".to_string()]));
    assert_eq!(l, BTreeSet::from(["route", "kind", "host", "resource"].map(String::from)));
    let s = parse("# HELP x\nvessel_a{vps=\"1\",type=\"used\"} 3\nvessel_b 1\n");
    assert_eq!(s["vessel_a"], BTreeSet::from(["vps".to_string(), "type".to_string()]));
    assert!(s["vessel_b"].is_empty());
}

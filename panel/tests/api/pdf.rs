//! PDF invoices (issue 14): rendered by headless Chromium, archived once, byte-identical on
//! every download, through the customer's page and the API, and nobody else's. Needs
//! Debian's `chromium` and `poppler-utils` (pdftotext), which `scripts/ensure-test-deps`
//! installs; fails (never skips) without them.

use crate::helpers::spawn_web_app;
use panel::clock::SystemClock;
use panel::plans::BillingCycle::Monthly;
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The text of a PDF, by poppler's pdftotext.
fn pdf_text(pdf: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) runs: scripts/ensure-test-deps installs it");
    child.stdin.take().unwrap().write_all(pdf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn download(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut r = http.get(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn an_invoice_pdf_is_archived_once_identical_on_every_download_and_only_its_owners() {
    assert!(std::path::Path::new(CHROMIUM).exists(), "the PDF test needs Debian's chromium: run scripts/ensure-test-deps");
    let app = spawn_web_app().await;
    let pool = &app.pool;
    panel::db::invoices::set_seller(pool, &crate::tax::seller()).await.unwrap();
    let ana = app.customer("ana@example.com").await;
    let bo = app.customer("bo@example.com").await;
    let ana_id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'ana@example.com'").fetch_one(pool).await.unwrap();
    sqlx::query("UPDATE accounts SET country = 'FR' WHERE id = $1").bind(ana_id).execute(pool).await.unwrap();
    let req = panel::orders::OrderRequest {
        plan_code: "burst-s".into(),
        cycle: Monthly,
        os_template: "debian-12".into(),
        hostname: "web1.example.com".into(),
        coupon: None,
    };
    let placed = panel::orders::place_order(pool, &SystemClock, ana_id, req).await.unwrap();
    let number: String =
        sqlx::query_scalar("SELECT 'INV-' || number_year || '-' || lpad(number_seq::text, 6, '0') FROM invoices WHERE id = $1")
            .bind(placed.invoice_id)
            .fetch_one(pool)
            .await
            .unwrap();

    // The invoice page links it; the download is a PDF that says what the invoice says.
    let path = format!("/invoices/{}/pdf", placed.invoice_id);
    let (_, page) = app.get(&ana, &format!("/invoices/{}", placed.invoice_id)).await;
    assert!(page.contains(&format!("href=\"{path}\"")), "{page}");
    let (s, ct, first) = download(&ana, &app.url(&path), None).await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"), "{}", String::from_utf8_lossy(&first));
    assert!(first.starts_with(b"%PDF-"), "not a PDF");
    let text = pdf_text(&first);
    assert!(text.contains(&number), "the PDF names its number {number}: {text}");
    assert!(text.contains("Vessel Hosting GmbH") && text.contains("DE811907980"), "the seller: {text}");
    assert!(text.contains("ana@example.com") && text.contains("3.60"), "the buyer and the total (FR VAT): {text}");

    // Again: the very same bytes (Chromium would stamp a new time: this is the archive).
    let (s, _, second) = download(&ana, &app.url(&path), None).await;
    assert_eq!(s, 200);
    assert!(first == second, "the second download differs from the first");
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_pdfs").fetch_one(pool).await.unwrap();
    assert_eq!(archived, 1);
    // An archived PDF is never rewritten.
    let e = sqlx::query("UPDATE invoice_pdfs SET pdf = '%PDF-x'::bytea").execute(pool).await.unwrap_err();
    assert!(e.to_string().contains("never changed"), "{e}");

    // Another customer, or nobody: 404 / log in, never the PDF.
    let (s, ct, body) = download(&bo, &app.url(&path), None).await;
    assert_eq!(s, 404, "another customer's invoice");
    assert!(!ct.contains("pdf") && !body.starts_with(b"%PDF"), "{ct}");
    let (s, _, body) = download(&crate::helpers::client(), &app.url(&path), None).await;
    assert!(s == 303 || s == 401 || s == 404, "anonymous: {s}");
    assert!(!body.starts_with(b"%PDF"));

    // The archiver archives what was issued since, without anyone downloading it.
    let credit = panel::money::Money::new(5000, panel::money::Currency::parse("EUR").unwrap());
    let admin = sqlx::query_scalar::<_, Uuid>("INSERT INTO accounts (role, email) VALUES ('admin', 'root@example.com') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap();
    panel::billing::payments::record_manual_payment(pool, &SystemClock, admin, ana_id, credit, "bank-1", None, None).await.unwrap();
    // The payment paid the invoice; voiding it issues a credit note: two new documents' worth.
    panel::billing::invoices::void_with_credit_note(pool, &SystemClock, admin, placed.invoice_id, None).await.unwrap();
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invoices i WHERE status <> 'draft' AND NOT EXISTS (SELECT 1 FROM invoice_pdfs p WHERE p.invoice_id = i.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(pending >= 1, "the credit note waits for its PDF");
    let n = panel::web::customer::archive_pending_pdfs(pool, CHROMIUM, 10, &mut Vec::new()).await.unwrap();
    assert_eq!(n as i64, pending);
    let cn: Vec<u8> =
        sqlx::query_scalar("SELECT p.pdf FROM invoice_pdfs p JOIN invoices i ON i.id = p.invoice_id WHERE i.kind = 'credit_note'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(pdf_text(&cn).contains("Credit note CN-"), "the credit note's own PDF");
    assert_eq!(panel::web::customer::archive_pending_pdfs(pool, CHROMIUM, 10, &mut Vec::new()).await.unwrap(), 0, "archived once");
    let (s, _, third) = download(&ana, &app.url(&path), None).await;
    assert!(s == 200 && third == first, "still the first archive");
}

/// Through the API: a reseller's invoice, its PDF twice the same; another reseller gets 404.
#[tokio::test]
async fn the_api_serves_a_resellers_invoice_pdf_and_hides_it_from_other_resellers() {
    assert!(std::path::Path::new(CHROMIUM).exists(), "the PDF test needs Debian's chromium: run scripts/ensure-test-deps");
    let app = spawn_web_app().await;
    let pool = &app.pool;
    let mut tokens = Vec::new();
    for email in ["a@resell.example", "b@resell.example"] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO accounts (role, email, display_name, status, email_verified_at, country) VALUES ('reseller', $1, 'R', 'active', now(), 'NL') RETURNING id",
        )
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap();
        tokens.push(
            panel::api_keys::create(pool, id, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
                .await
                .unwrap()
                .token,
        );
    }
    let http = reqwest::Client::new();
    let post =
        |path: &str, token: &str, body: serde_json::Value| http.post(app.url(path)).bearer_auth(token.to_string()).json(&body).send();
    let c: serde_json::Value = post("/api/v1/customers", &tokens[0], serde_json::json!({"email": "c@example.com", "name": "C"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = post(
        "/api/v1/servers",
        &tokens[0],
        serde_json::json!({"customer_id": c["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": "api.example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices").fetch_one(pool).await.unwrap();
    let url = app.url(&format!("/api/v1/invoices/{invoice}/pdf"));
    let (s, ct, first) = download(&http, &url, Some(&tokens[0])).await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"), "{}", String::from_utf8_lossy(&first));
    assert!(first.starts_with(b"%PDF-") && pdf_text(&first).contains("INV-"));
    let (_, _, second) = download(&http, &url, Some(&tokens[0])).await;
    assert!(first == second, "byte-identical");
    let (s, ct, body) = download(&http, &url, Some(&tokens[1])).await;
    assert_eq!((s, ct.as_str()), (404, "application/problem+json"), "{}", String::from_utf8_lossy(&body));
    let (s, _, _) = download(&http, &app.url(&format!("/api/v1/invoices/{}/pdf", Uuid::new_v4())), Some(&tokens[0])).await;
    assert_eq!(s, 404);
}

async fn order_for(pool: &sqlx::PgPool, customer: Uuid, host: &str) -> Uuid {
    let req = panel::orders::OrderRequest {
        plan_code: "burst-s".into(),
        cycle: Monthly,
        os_template: "debian-12".into(),
        hostname: host.into(),
        coupon: None,
    };
    panel::orders::place_order(pool, &SystemClock, customer, req).await.unwrap().invoice_id
}

/// One invoice that fails to render (a Chromium wrapper that fails on its number) is logged
/// and skipped: the archiver archives the ones after it, and leaves it out of its next runs. An
/// invoice from before the tax facts (no treatment, no seller) is never archived and its
/// download says why (409); without Chromium a download is a clear 503, page and API.
#[tokio::test]
async fn one_bad_invoice_does_not_block_the_archive_and_old_or_unrenderable_ones_say_why() {
    assert!(std::path::Path::new(CHROMIUM).exists(), "the PDF test needs Debian's chromium: run scripts/ensure-test-deps");
    let app = crate::helpers::spawn_web_app_with(|s| s.billing.pdf_chromium = "/nonexistent/chromium".into()).await;
    let pool = &app.pool;
    panel::db::invoices::set_seller(pool, &crate::tax::seller()).await.unwrap();
    let ana = app.customer("ana@example.com").await;
    let ana_id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'ana@example.com'").fetch_one(pool).await.unwrap();
    sqlx::query("UPDATE accounts SET country = 'FR' WHERE id = $1").bind(ana_id).execute(pool).await.unwrap();
    let bad = order_for(pool, ana_id, "bad.example.com").await;
    let good = order_for(pool, ana_id, "good.example.com").await;
    let old = order_for(pool, ana_id, "old.example.com").await;
    // An invoice as the tax migration found it: no treatment, no parties (triggers off to write it).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE invoices SET tax_treatment = NULL, seller_legal_name = NULL, seller_address = NULL, seller_vat_id = NULL, buyer_name = NULL, buyer_address = NULL, buyer_country = NULL WHERE id = $1")
        .bind(old)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let number: String =
        sqlx::query_scalar("SELECT 'INV-' || number_year || '-' || lpad(number_seq::text, 6, '0') FROM invoices WHERE id = $1")
            .bind(bad)
            .fetch_one(pool)
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("chromium");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nfor a in \"$@\"; do last=\"$a\"; done\nif grep -q '{number}' \"${{last#file://}}\"; then echo injected failure >&2; exit 1; fi\nexec {CHROMIUM} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wrapper = wrapper.to_str().unwrap().to_string();

    let mut failed = Vec::new();
    let n = panel::web::customer::archive_pending_pdfs(pool, &wrapper, 10, &mut failed).await.unwrap();
    assert_eq!(n, 1, "the good invoice is archived though the bad one, older, failed");
    assert_eq!(failed, vec![bad]);
    let archived: Vec<Uuid> = sqlx::query_scalar("SELECT invoice_id FROM invoice_pdfs").fetch_all(pool).await.unwrap();
    assert_eq!(archived, vec![good], "the old one (no facts) is not archived either");
    assert_eq!(
        panel::web::customer::archive_pending_pdfs(pool, &wrapper, 10, &mut failed).await.unwrap(),
        0,
        "the failed one is not retried in a loop"
    );
    // Not even by a direct write: the database refuses to archive an invoice without its facts.
    assert!(!panel::db::invoices::store_pdf(pool, old, b"%PDF-1.4 x").await.unwrap());

    // The old invoice's download: a page that says why, not a PDF and not a 500.
    let (s, body) = app.get(&ana, &format!("/invoices/{old}/pdf")).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("before invoices recorded the seller"), "{body}");
    // Without Chromium (this app's setting): 503 and a page that says what still works.
    let (s, body) = app.get(&ana, &format!("/invoices/{bad}/pdf")).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("PDF invoices cannot be made right now"), "{body}");
    let (s, _) = app.get(&ana, &format!("/invoices/{good}/pdf")).await;
    assert_eq!(s, 200, "an archived PDF needs no Chromium");
    // And the archiver stops its batch on a missing renderer, blaming no invoice.
    let mut none = Vec::new();
    assert!(panel::web::customer::archive_pending_pdfs(pool, "/nonexistent/chromium", 10, &mut none).await.is_err());
    assert!(none.is_empty());
}

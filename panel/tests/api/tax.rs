//! Tax from facts (issue 14): the country from ISO 3166-1, EU VAT by the buyer's country,
//! reverse charge for EU businesses with a VAT ID of the right format, 0 % outside the EU, the
//! seller's rate when the country is unknown; the seller and the buyer on every invoice; bad
//! input refused with a clear error, on the domain, the pages and the API.

use crate::billing_world::World;
use panel::auth::{update_profile, AuthError, Profile};
use panel::plans::BillingCycle::Monthly;
use sqlx::{Connection, Executor, PgPool};
use uuid::Uuid;

pub fn seller() -> panel::config::SellerSettings {
    panel::config::SellerSettings {
        legal_name: "Vessel Hosting GmbH".into(),
        address: "Hauptstraße 1\n10115 Berlin\nGermany".into(),
        country: "DE".into(),
        vat_id: "DE811907980".into(),
    }
}

#[derive(Debug, sqlx::FromRow, PartialEq)]
struct Taxed {
    tax_minor: i64,
    rate_bp: i32,
    tax_treatment: Option<String>,
    buyer_vat_id: Option<String>,
    buyer_vat_id_check: Option<String>,
    tax_note: Option<String>,
    seller_legal_name: Option<String>,
    seller_vat_id: Option<String>,
    buyer_address: Option<String>,
}

async fn taxed(pool: &PgPool, invoice: Uuid) -> Taxed {
    sqlx::query_as(
        "SELECT i.tax_minor, (SELECT tax_rate_bp FROM invoice_lines l WHERE l.invoice_id = i.id ORDER BY position LIMIT 1) AS rate_bp,
                i.tax_treatment, i.buyer_vat_id, i.buyer_vat_id_check, i.tax_note, i.seller_legal_name, i.seller_vat_id, i.buyer_address
           FROM invoices i WHERE i.id = $1",
    )
    .bind(invoice)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn profile(pool: &PgPool, who: Uuid, country: &str, vat_id: &str) -> Result<(), AuthError> {
    update_profile(pool, who, Profile { name: "Buyer", country, time_zone: "UTC", address: "1 Rue de Rivoli\n75001 Paris", vat_id }).await
}

/// DE and FR consumers pay their own country's VAT; a French business with a VAT ID is
/// reverse-charged (0 %, the note, the ID and its check on the invoice); a German business is
/// not (same country as the seller); a US buyer pays none (export); a buyer of unknown country
/// pays the seller's rate. The same on the renewal. The seller is on every invoice.
#[tokio::test]
async fn vat_follows_the_buyers_country_and_vat_id_on_orders_and_renewals() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    panel::db::invoices::set_seller(&w.pool, &seller()).await.unwrap();
    let de = w.customer("de@example.com", Some("DE")).await;
    let fr = w.customer("fr@example.com", Some("FR")).await;
    let fr_biz = w.customer("fr-biz@example.com", None).await;
    profile(&w.pool, fr_biz, "fr", "FR 40 303 265 045").await.unwrap();
    let de_biz = w.customer("de-biz@example.com", None).await;
    profile(&w.pool, de_biz, "DE", "DE811907980").await.unwrap();
    let us = w.customer("us@example.com", Some("US")).await;
    let nowhere = w.customer("nowhere@example.com", None).await;

    // burst-s: 3.00 a month.
    let cases = [
        (de, 57, 1900, "domestic", None),
        (fr, 60, 2000, "eu_consumer", None),
        (fr_biz, 0, 0, "reverse_charge", Some("FR40303265045")),
        (de_biz, 57, 1900, "domestic", None),
        (us, 0, 0, "export", None),
        (nowhere, 57, 1900, "unknown", None),
    ];
    let mut subs = Vec::new();
    for (who, tax, rate, treatment, vat) in cases {
        let placed = w.order(who, "burst-s", Monthly, None).await;
        let t = taxed(&w.pool, placed.invoice_id).await;
        assert_eq!(
            (t.tax_minor, t.rate_bp, t.tax_treatment.as_deref(), t.buyer_vat_id.as_deref()),
            (tax, rate, Some(treatment), vat),
            "{treatment}: {t:?}"
        );
        assert_eq!((t.seller_legal_name.as_deref(), t.seller_vat_id.as_deref()), (Some("Vessel Hosting GmbH"), Some("DE811907980")));
        match treatment {
            "reverse_charge" => {
                assert!(t.tax_note.as_deref().unwrap().contains("Reverse charge"), "{t:?}");
                assert!(t.buyer_vat_id_check.as_deref().unwrap().starts_with("format valid for FR"), "{t:?}");
                assert_eq!(t.buyer_address.as_deref(), Some("1 Rue de Rivoli\n75001 Paris"));
            }
            "export" => assert!(t.tax_note.as_deref().unwrap().contains("outside the EU"), "{t:?}"),
            _ => assert_eq!(t.buyer_vat_id_check, None),
        }
        w.credit(who, 300 + tax).await;
        w.pay(who, placed.invoice_id).await;
        subs.push((placed.subscription_id, tax, treatment));
    }
    // The renewals, a week before the period ends: the same facts, the same tax.
    w.set("2026-05-26T10:00:00Z");
    w.renew().await;
    for (sub, tax, treatment) in subs {
        let renewal: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE subscription_id = $1 AND period_start = '2026-06-01'")
            .bind(sub)
            .fetch_one(&w.pool)
            .await
            .unwrap();
        let t = taxed(&w.pool, renewal).await;
        assert_eq!((t.tax_minor, t.tax_treatment.as_deref()), (tax, Some(treatment)), "renewal, {treatment}: {t:?}");
    }
    w.invariants().await;
}

/// A country not in ISO 3166-1 or a VAT ID of the wrong shape is refused with a message that
/// says what to do, and nothing is written; the database refuses such a country too.
#[tokio::test]
async fn a_bad_country_or_vat_id_is_refused_clearly_and_changes_nothing() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    for bad in ["XX", "Germany", "D", "UK"] {
        let e = profile(&w.pool, ana, bad, "").await.unwrap_err();
        assert!(e.to_string().contains("choose your country from the list"), "{bad}: {e}");
        assert_eq!(e.field(), Some("country"));
    }
    let e = profile(&w.pool, ana, "DE", "DE12345").await.unwrap_err();
    assert!(e.to_string().contains("not a valid VAT ID for DE") && e.to_string().contains("DE123456789"), "{e}");
    assert_eq!(e.field(), Some("vat_id"));
    let e = profile(&w.pool, ana, "US", "123456789").await.unwrap_err();
    assert!(e.to_string().contains("EU member state"), "{e}");
    let (country, vat): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT country, vat_id FROM accounts WHERE id = $1").bind(ana).fetch_one(&w.pool).await.unwrap();
    assert_eq!((country.as_deref(), vat), (Some("DE"), None), "nothing changed");
    let e = sqlx::query("UPDATE accounts SET country = 'XX' WHERE id = $1").bind(ana).execute(&w.pool).await.unwrap_err();
    assert!(e.to_string().contains("accounts_country_fk"), "{e}");
    // An order after a refused change is still taxed by the facts that stand.
    let placed = w.order(ana, "burst-s", Monthly, None).await;
    assert_eq!(taxed(&w.pool, placed.invoice_id).await.tax_minor, 57);
}

/// The pages offer a select of ISO 3166-1 countries and refuse a forged value with the reason
/// (422, on the form); the API names the field.
#[tokio::test]
async fn the_forms_offer_a_country_list_and_the_server_refuses_anything_else() {
    let app = crate::helpers::spawn_web_app().await;
    let anon = crate::helpers::client();
    let (s, html) = app.get(&anon, "/signup").await;
    assert_eq!(s, 200);
    assert!(html.contains("<select id=\"country\" name=\"country\"") && html.contains("<option value=\"DE\">Germany</option>"), "{html}");
    let (s, _, body) = app
        .submit(&anon, "/signup", "/signup", &[("email", "x@example.com"), ("password", "correct horse battery"), ("country", "XX")])
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("choose your country from the list"), "{body}");
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM accounts").fetch_one(&app.pool).await.unwrap(), 0);

    let ana = app.customer("ana@example.com").await;
    let (s, html) = app.get(&ana, "/account").await;
    assert_eq!(s, 200);
    assert!(html.contains("<option value=\"FR\">France</option>") && html.contains("id=\"vat_id\""), "{html}");
    let form = |country: &'static str, vat: &'static str| {
        vec![("name", "Ana"), ("country", country), ("time_zone", "UTC"), ("address", "1 Main St"), ("vat_id", vat)]
    };
    let (s, _, body) = app.submit(&ana, "/account", "/account/details", &form("ZZ", "")).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("choose your country from the list"), "{body}");
    let (s, _, body) = app.submit(&ana, "/account", "/account/details", &form("FR", "FR123")).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("not a valid VAT ID for FR"), "{body}");
    let (s, loc, body) = app.submit(&ana, "/account", "/account/details", &form("FR", "FR40303265045")).await;
    assert_eq!((s, loc.as_str()), (303, "/account?done=saved"), "{body}");
    let (_, html) = app.get(&ana, "/account").await;
    assert!(html.contains("<option value=\"FR\" selected>France</option>") && html.contains("FR40303265045"), "{html}");

    let reseller: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'r@resell.example', 'R', 'active', now()) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let token = panel::api_keys::create(&app.pool, reseller, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/customers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"email": "c@example.com", "name": "C", "country": "XX"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v.to_string().contains("country") && v.to_string().contains("choose your country"), "{v}");
}

/// Countries stored before the list: an ISO code stays, 'UK' and 'EL' become GB and GR, and
/// anything else is kept as entered beside a NULL country (the customer picks one again).
#[tokio::test]
async fn free_text_countries_are_migrated_without_losing_what_was_entered() {
    let url = vessel_devdb::empty_database().await.unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    const TAX: i64 = 20261201010000;
    for m in panel::db::MIGRATOR.iter().filter(|m| !m.migration_type.is_down_migration() && m.version < TAX) {
        c.execute(&*m.sql).await.unwrap_or_else(|e| panic!("{}: {e}", m.description));
    }
    c.execute(
        "INSERT INTO accounts (role, email, country) VALUES ('customer', 'de@x.example', 'DE'), ('customer', 'uk@x.example', 'UK'),
                ('customer', 'xx@x.example', 'XX'), ('customer', 'none@x.example', NULL)",
    )
    .await
    .unwrap();
    let tax = panel::db::MIGRATOR.iter().find(|m| m.version == TAX && !m.migration_type.is_down_migration()).unwrap();
    c.execute(&*tax.sql).await.unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT email, country, country_as_entered FROM accounts ORDER BY email").fetch_all(&mut c).await.unwrap();
    let rows: Vec<_> = rows.iter().map(|(e, c, a)| (e.as_str(), c.as_deref(), a.as_deref())).collect();
    assert_eq!(
        rows,
        vec![
            ("de@x.example", Some("DE"), None),
            ("none@x.example", None, None),
            ("uk@x.example", Some("GB"), Some("UK")),
            ("xx@x.example", None, Some("XX"))
        ]
    );
}

/// A reseller pays for its servers, so it keeps its own tax facts on its account page: a Dutch
/// reseller with a VAT ID is reverse-charged by a German seller, on the API's invoices.
#[tokio::test]
async fn a_reseller_sets_its_vat_id_and_its_wholesale_invoices_are_reverse_charged() {
    let app = crate::helpers::spawn_web_app().await;
    panel::db::invoices::set_seller(&app.pool, &seller()).await.unwrap();
    let (c, reseller) = crate::web_reseller::reseller(&app, "shop@resell.example").await;
    let (s, html) = app.get(&c, "/account").await;
    assert_eq!(s, 200, "a reseller has an account page: {html}");
    assert!(html.contains("href=\"/account\""), "and a link to it");
    let form = [
        ("name", "Shop BV"),
        ("country", "NL"),
        ("time_zone", "Europe/Amsterdam"),
        ("address", "Damrak 1\n1012 LG Amsterdam"),
        ("vat_id", "NL 123456789 B01"),
    ];
    let (s, loc, body) = app.submit(&c, "/account", "/account/details", &form).await;
    assert_eq!((s, loc.as_str()), (303, "/account?done=saved"), "{body}");
    let token = panel::api_keys::create(&app.pool, reseller, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let customer: serde_json::Value = http
        .post(app.url("/api/v1/customers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"email": "c@example.com", "name": "C", "country": "DE"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(app.url("/api/v1/servers"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"customer_id": customer["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": "nl.example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices").fetch_one(&app.pool).await.unwrap();
    let t = taxed(&app.pool, invoice).await;
    assert_eq!(
        (t.tax_minor, t.tax_treatment.as_deref(), t.buyer_vat_id.as_deref()),
        (0, Some("reverse_charge"), Some("NL123456789B01")),
        "{t:?}"
    );
    assert_eq!(t.buyer_address.as_deref(), Some("Damrak 1\n1012 LG Amsterdam"));
}

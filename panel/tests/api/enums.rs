//! Every PostgreSQL enum of the schema has its Rust type, with exactly the schema's labels in
//! the schema's order: a label added on one side only fails here, not at run time.

use panel::accounts::{AccountStatus, Role};
use panel::auth::TokenPurpose;
use panel::billing::invoices::{InvoiceKind, InvoiceStatus};
use panel::billing::ledger::LedgerAccountType;
use panel::billing::payments::PaymentMethod;
use panel::hosts::Reachability;
use panel::jobs::JobStatus;
use panel::orders::OrderStatus;
use panel::plans::BillingCycle;
use panel::subscriptions::SubscriptionStatus;
use panel::vps::{DesiredState, ObservedState};

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<String> {
    all.iter().map(|v| name(*v).to_string()).collect()
}

#[tokio::test]
async fn every_schema_enum_has_its_rust_type_with_the_same_labels() {
    let pool = crate::helpers::fresh_pool().await;
    let rust: Vec<(&str, Vec<String>)> = vec![
        ("account_role", names(&Role::ALL, Role::as_str)),
        ("account_status", names(&AccountStatus::ALL, AccountStatus::as_str)),
        ("account_token_purpose", names(&TokenPurpose::ALL, TokenPurpose::as_str)),
        ("billing_cycle", names(&BillingCycle::ALL, BillingCycle::as_str)),
        ("desired_state", names(&DesiredState::ALL, DesiredState::as_str)),
        ("host_reachability", names(&Reachability::ALL, Reachability::as_str)),
        (
            "instance_kind",
            names(&[vessel_core::InstanceKind::Container, vessel_core::InstanceKind::Kvm], vessel_core::InstanceKind::as_str),
        ),
        ("invoice_kind", names(&InvoiceKind::ALL, InvoiceKind::as_str)),
        ("invoice_status", names(&InvoiceStatus::ALL, InvoiceStatus::as_str)),
        ("job_status", names(&JobStatus::ALL, JobStatus::as_str)),
        ("ledger_account_type", names(&LedgerAccountType::ALL, LedgerAccountType::as_str)),
        ("observed_state", names(&ObservedState::ALL, ObservedState::as_str)),
        ("order_status", names(&OrderStatus::ALL, OrderStatus::as_str)),
        ("payment_method", names(&PaymentMethod::ALL, PaymentMethod::as_str)),
        ("subscription_status", names(&SubscriptionStatus::ALL, SubscriptionStatus::as_str)),
    ];
    let schema: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = current_schema() GROUP BY t.typname ORDER BY t.typname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let rust: Vec<(String, Vec<String>)> = rust.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    assert_eq!(rust, schema);
    // The kinds come from core: each decodes from the database as itself.
    for kind in [vessel_core::InstanceKind::Container, vessel_core::InstanceKind::Kvm] {
        let back: vessel_core::InstanceKind = sqlx::query_scalar("SELECT $1::instance_kind").bind(kind).fetch_one(&pool).await.unwrap();
        assert_eq!(back, kind);
    }
    // And one of the panel's round-trips through a bind and a read without any text cast.
    for s in ObservedState::ALL {
        let back: ObservedState = sqlx::query_scalar("SELECT $1").bind(s).fetch_one(&pool).await.unwrap();
        assert_eq!(back, s);
    }
}

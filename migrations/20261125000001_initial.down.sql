DROP TABLE IF EXISTS audit_log, jobs, ip_addresses, instances, ledger_entries, ledger_transactions,
    ledger_accounts, payments, invoice_lines, invoice_number_sequences, invoices, subscriptions,
    orders, coupons, ip_pools, hosts, os_templates, plan_prices, plans, accounts CASCADE;
DROP FUNCTION IF EXISTS ledger_append_only(), ledger_transaction_balances(),
    invoice_lines_only_on_drafts(), invoices_immutable_once_issued() CASCADE;
DROP TYPE IF EXISTS job_status, observed_state, desired_state, ledger_account_type, payment_method,
    invoice_status, invoice_kind, subscription_status, order_status, host_reachability,
    billing_cycle, instance_kind, account_status, account_role CASCADE;

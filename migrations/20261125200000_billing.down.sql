DROP INDEX IF EXISTS invoices_unpaid_idx;
DROP TABLE IF EXISTS webhook_events, dunning_events, email_outbox, tax_rates;
DROP FUNCTION IF EXISTS tax_minor(bigint, integer), period_start(date, billing_cycle, integer), cycle_months(billing_cycle);
ALTER TABLE subscriptions DROP COLUMN IF EXISTS current_period_index, DROP COLUMN IF EXISTS suspended_at,
    DROP COLUMN IF EXISTS terminated_at;

-- Billing: tax rates, the email outbox, dunning steps, gateway event dedupe, and the period
-- index that makes renewals a pure function of (anchor date, cycle, index).

-- Period k of a subscription is [anchor + k·m months, anchor + (k+1)·m months), computed from
-- the anchor each time, so month-end clamping never drifts (31 Jan → 28/29 Feb → 31 Mar).
ALTER TABLE subscriptions
    ADD COLUMN current_period_index integer NOT NULL DEFAULT 0,
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN terminated_at timestamptz,
    ADD CONSTRAINT subscriptions_period_index_non_negative CHECK (current_period_index >= 0);

-- The months in one billing cycle.
CREATE FUNCTION cycle_months(c billing_cycle) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE c WHEN 'monthly' THEN 1 WHEN 'quarterly' THEN 3 ELSE 12 END
$$;

-- The start of period k (PostgreSQL's date + interval clamps to the month's end).
CREATE FUNCTION period_start(anchor date, c billing_cycle, k integer) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT (anchor + make_interval(months => k * cycle_months(c)))::date
$$;

-- Tax on an amount at a rate in basis points, rounded half up: the one rounding rule.
CREATE FUNCTION tax_minor(amount bigint, rate_bp integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (amount * rate_bp + 5000) / 10000
$$;

CREATE TABLE tax_rates (
    country    text NOT NULL,
    valid_from date NOT NULL,
    rate_bp    integer NOT NULL,
    PRIMARY KEY (country, valid_from),
    CONSTRAINT tax_rates_country_iso CHECK (country ~ '^[A-Z]{2}$'),
    CONSTRAINT tax_rates_range CHECK (rate_bp BETWEEN 0 AND 10000)
);
-- Standard VAT rates of a few countries as a starting point; admins keep the table.
INSERT INTO tax_rates (country, valid_from, rate_bp) VALUES
    ('DE', '2021-01-01', 1900), ('FR', '2014-01-01', 2000), ('NL', '2019-01-01', 2100),
    ('AT', '2021-01-01', 2000), ('BE', '1996-01-01', 2100), ('IE', '2023-03-01', 2300),
    ('ES', '2012-09-01', 2100), ('IT', '2013-10-01', 2200), ('PL', '2011-01-01', 2300),
    ('SE', '1990-07-01', 2500), ('FI', '2024-09-01', 2550), ('GB', '2011-01-04', 2000);

CREATE TABLE email_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_address  text NOT NULL,
    template    text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    -- Same key, same email: a retried run does not send twice.
    dedupe_key  text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    run_after   timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    CONSTRAINT email_outbox_template_name CHECK (template ~ '^[a-z_]+$'),
    CONSTRAINT email_outbox_attempts CHECK (attempts >= 0)
);
CREATE INDEX email_outbox_pending_idx ON email_outbox (run_after) WHERE sent_at IS NULL;

-- Each dunning step happens once per invoice (the key makes a rerun a no-op).
CREATE TABLE dunning_events (
    invoice_id uuid NOT NULL REFERENCES invoices (id),
    step       text NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (invoice_id, step),
    CONSTRAINT dunning_events_step CHECK (step IN ('reminder_before', 'reminder_after', 'suspended', 'terminated'))
);

-- Payment gateway events (Stripe webhooks), each processed once.
CREATE TABLE webhook_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

CREATE INDEX invoices_unpaid_idx ON invoices (due_at) WHERE status = 'issued';

-- Vessel's schema of record. Rules that must never be broken are constraints here, not only
-- checks in code: a second invoice for one subscription period, a plan whose burst is below
-- its guarantee, an overcommitted KVM plan or a negative price cannot be stored at all.
-- Money is integer minor units with an ISO 4217 currency code; time is timestamptz (UTC).

-- ---------------------------------------------------------------- accounts
CREATE TYPE account_role AS ENUM ('customer', 'reseller', 'admin');
CREATE TYPE account_status AS ENUM ('pending_verification', 'active', 'suspended', 'closed');

CREATE TABLE accounts (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    role              account_role NOT NULL,
    email             text NOT NULL,
    -- argon2id PHC string; NULL for a reseller's sub-account that never logs in here.
    password_hash     text,
    email_verified_at timestamptz,
    status            account_status NOT NULL DEFAULT 'active',
    display_name      text NOT NULL DEFAULT '',
    country           text,             -- ISO 3166-1 alpha-2, for tax rates
    time_zone         text NOT NULL DEFAULT 'UTC', -- display only; everything is stored in UTC
    currency          text NOT NULL DEFAULT 'EUR',
    -- A customer that belongs to a reseller (managed through the reseller API).
    reseller_id       uuid REFERENCES accounts (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_normalised CHECK (email = lower(btrim(email)) AND email ~ '^[^@\s]+@[^@\s]+$'),
    CONSTRAINT accounts_password_argon2id CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    CONSTRAINT accounts_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT accounts_country_iso CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    CONSTRAINT accounts_reseller_only_for_customers CHECK (reseller_id IS NULL OR role = 'customer'),
    CONSTRAINT accounts_not_own_reseller CHECK (reseller_id IS NULL OR reseller_id <> id)
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (email);
CREATE INDEX accounts_reseller_idx ON accounts (reseller_id) WHERE reseller_id IS NOT NULL;

-- ---------------------------------------------------------------- catalogue
CREATE TYPE instance_kind AS ENUM ('container', 'kvm');
CREATE TYPE billing_cycle AS ENUM ('monthly', 'quarterly', 'annual');

-- A plan is versioned: a plan in use is never changed under its subscribers; a change makes
-- version n+1 and the old version stops being orderable. Ratios are kept in thousandths
-- (1500 = 1.5) so the admission rule can be decided exactly.
CREATE TABLE plans (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                  text NOT NULL,
    version               integer NOT NULL,
    name                  text NOT NULL,
    description           text NOT NULL DEFAULT '',
    kind                  instance_kind NOT NULL,
    vcpus                 integer NOT NULL,
    memory_guaranteed_mib bigint NOT NULL,
    memory_burst_mib      bigint NOT NULL,
    swap_mib              bigint NOT NULL DEFAULT 0,
    disk_gib              bigint NOT NULL,
    cpu_ratio_milli       integer NOT NULL,
    memory_ratio_milli    integer NOT NULL,
    disk_ratio_milli      integer NOT NULL,
    pids_max              integer NOT NULL,
    net_rate_mbit         integer,
    io_weight             integer NOT NULL,
    -- Monthly transfer included, for bandwidth metering; NULL is unmetered.
    bandwidth_gib         bigint,
    orderable             boolean NOT NULL DEFAULT true,
    superseded_by         bigint REFERENCES plans (id),
    source_file           text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plans_code_format CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    CONSTRAINT plans_version_positive CHECK (version >= 1),
    CONSTRAINT plans_code_version_key UNIQUE (code, version),
    CONSTRAINT plans_name_present CHECK (btrim(name) <> ''),
    CONSTRAINT plans_vcpus_range CHECK (vcpus BETWEEN 1 AND 256),
    CONSTRAINT plans_memory_floor CHECK (memory_guaranteed_mib >= 64),
    CONSTRAINT plans_burst_at_least_guarantee CHECK (memory_burst_mib >= memory_guaranteed_mib),
    CONSTRAINT plans_swap_non_negative CHECK (swap_mib >= 0),
    CONSTRAINT plans_disk_positive CHECK (disk_gib >= 1),
    CONSTRAINT plans_ratios_at_least_one CHECK (cpu_ratio_milli >= 1000 AND memory_ratio_milli >= 1000 AND disk_ratio_milli >= 1000),
    CONSTRAINT plans_ratios_sane CHECK (cpu_ratio_milli <= 100000 AND memory_ratio_milli <= 100000 AND disk_ratio_milli <= 100000),
    CONSTRAINT plans_kvm_memory_dedicated CHECK (
        kind <> 'kvm' OR (memory_ratio_milli = 1000 AND memory_burst_mib = memory_guaranteed_mib AND swap_mib = 0)),
    CONSTRAINT plans_pids_max_floor CHECK (pids_max >= 16),
    CONSTRAINT plans_net_rate_positive CHECK (net_rate_mbit IS NULL OR net_rate_mbit > 0),
    CONSTRAINT plans_io_weight_range CHECK (io_weight BETWEEN 10 AND 1000),
    CONSTRAINT plans_bandwidth_non_negative CHECK (bandwidth_gib IS NULL OR bandwidth_gib >= 0)
);
-- At most one orderable version of each plan.
CREATE UNIQUE INDEX plans_one_orderable_version ON plans (code) WHERE orderable;

CREATE TABLE plan_prices (
    plan_id      bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    cycle        billing_cycle NOT NULL,
    currency     text NOT NULL,
    amount_minor bigint NOT NULL,
    PRIMARY KEY (plan_id, cycle, currency),
    CONSTRAINT plan_prices_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT plan_prices_non_negative CHECK (amount_minor >= 0)
);

CREATE TABLE os_templates (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL UNIQUE,          -- e.g. debian-12, busybox
    display_name text NOT NULL,
    version      text NOT NULL DEFAULT '',
    for_containers boolean NOT NULL DEFAULT true,
    for_kvm      boolean NOT NULL DEFAULT true,
    sha256       text,
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT os_templates_name_format CHECK (name ~ '^[a-z0-9][a-z0-9.-]{0,62}$'),
    CONSTRAINT os_templates_some_kind CHECK (for_containers OR for_kvm),
    CONSTRAINT os_templates_sha256_format CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$')
);

-- ---------------------------------------------------------------- hosts and addresses
CREATE TYPE host_reachability AS ENUM ('unknown', 'reachable', 'unreachable');

CREATE TABLE hosts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL UNIQUE,
    -- Base URL of the host's provisioner API.
    api_url             text NOT NULL,
    supports_containers boolean NOT NULL DEFAULT true,
    supports_kvm        boolean NOT NULL DEFAULT true,
    cpus                integer NOT NULL,
    memory_mib          bigint NOT NULL,
    disk_gib            bigint NOT NULL,
    reserved_cpus       integer NOT NULL DEFAULT 0,
    reserved_memory_mib bigint NOT NULL DEFAULT 0,
    reserved_disk_gib   bigint NOT NULL DEFAULT 0,
    enabled             boolean NOT NULL DEFAULT true,
    -- The shared secret requests to this host are signed with (set when the host joins).
    api_secret          bytea,
    -- sha256 of the one-time join token an admin hands to the host.
    join_token_sha256   text,
    reachability        host_reachability NOT NULL DEFAULT 'unknown',
    last_seen_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hosts_capacity_positive CHECK (cpus > 0 AND memory_mib > 0 AND disk_gib > 0),
    CONSTRAINT hosts_reserve_non_negative CHECK (reserved_cpus >= 0 AND reserved_memory_mib >= 0 AND reserved_disk_gib >= 0),
    CONSTRAINT hosts_reserve_below_capacity CHECK (reserved_cpus < cpus AND reserved_memory_mib < memory_mib AND reserved_disk_gib < disk_gib),
    CONSTRAINT hosts_some_kind CHECK (supports_containers OR supports_kvm)
);

CREATE TABLE ip_pools (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE,
    network    cidr NOT NULL,
    gateway    inet NOT NULL,
    -- A pool bound to one host (its routed block); NULL = usable on any host.
    host_id    uuid REFERENCES hosts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ip_pools_gateway_inside CHECK (gateway << network),
    CONSTRAINT ip_pools_same_family CHECK (family(gateway) = family(network))
);

-- ---------------------------------------------------------------- ordering and billing
CREATE TYPE order_status AS ENUM (
    'pending_payment', 'paid', 'waiting_for_capacity', 'provisioning', 'active', 'cancelled', 'failed');

CREATE TABLE coupons (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code            text NOT NULL UNIQUE,
    percent_off     integer,
    amount_off_minor bigint,
    currency        text,
    recurring       boolean NOT NULL DEFAULT false,
    valid_until     timestamptz,
    max_redemptions integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_code_format CHECK (code ~ '^[A-Z0-9-]{3,32}$'),
    CONSTRAINT coupons_one_kind CHECK ((percent_off IS NULL) <> (amount_off_minor IS NULL)),
    CONSTRAINT coupons_percent_range CHECK (percent_off IS NULL OR percent_off BETWEEN 1 AND 100),
    CONSTRAINT coupons_amount_needs_currency CHECK (amount_off_minor IS NULL OR (amount_off_minor > 0 AND currency ~ '^[A-Z]{3}$')),
    CONSTRAINT coupons_max_positive CHECK (max_redemptions IS NULL OR max_redemptions > 0)
);

CREATE TABLE orders (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    plan_id        bigint NOT NULL REFERENCES plans (id),
    cycle          billing_cycle NOT NULL,
    os_template_id uuid NOT NULL REFERENCES os_templates (id),
    hostname       text NOT NULL,
    coupon_id      uuid REFERENCES coupons (id),
    status         order_status NOT NULL DEFAULT 'pending_payment',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_hostname_format CHECK (hostname ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$')
);
CREATE INDEX orders_account_idx ON orders (account_id, created_at DESC);

CREATE TYPE subscription_status AS ENUM ('pending', 'active', 'suspended', 'terminated', 'cancelled');

-- Periods are anchored on the order date with month-end clamping (31 Jan → 28/29 Feb → 31 Mar):
-- the next period is computed from anchor_day, not from the previous end.
CREATE TABLE subscriptions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id           uuid NOT NULL REFERENCES accounts (id),
    order_id             uuid NOT NULL UNIQUE REFERENCES orders (id),
    plan_id              bigint NOT NULL REFERENCES plans (id),
    cycle                billing_cycle NOT NULL,
    currency             text NOT NULL,
    price_minor          bigint NOT NULL,   -- the price locked in at order time
    coupon_id            uuid REFERENCES coupons (id),
    anchor_date          date NOT NULL,
    current_period_start date NOT NULL,
    current_period_end   date NOT NULL,
    status               subscription_status NOT NULL DEFAULT 'pending',
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_price_non_negative CHECK (price_minor >= 0),
    CONSTRAINT subscriptions_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT subscriptions_period_order CHECK (current_period_end > current_period_start)
);
CREATE INDEX subscriptions_account_idx ON subscriptions (account_id);
CREATE INDEX subscriptions_renewal_idx ON subscriptions (current_period_end) WHERE status IN ('active', 'suspended');

CREATE TYPE invoice_kind AS ENUM ('invoice', 'credit_note');
CREATE TYPE invoice_status AS ENUM ('draft', 'issued', 'paid', 'void');

CREATE TABLE invoices (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id         uuid NOT NULL REFERENCES accounts (id),
    kind               invoice_kind NOT NULL DEFAULT 'invoice',
    -- Assigned on issue from invoice_number_sequences: gapless per year and kind.
    number_year        integer,
    number_seq         integer,
    subscription_id    uuid REFERENCES subscriptions (id),
    period_start       date,
    period_end         date,
    corrects_invoice_id uuid REFERENCES invoices (id),
    currency           text NOT NULL,
    subtotal_minor     bigint NOT NULL DEFAULT 0,
    tax_minor          bigint NOT NULL DEFAULT 0,
    total_minor        bigint NOT NULL DEFAULT 0,
    status             invoice_status NOT NULL DEFAULT 'draft',
    issued_at          timestamptz,
    due_at             timestamptz,
    paid_at            timestamptz,
    voided_at          timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoices_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT invoices_money_non_negative CHECK (subtotal_minor >= 0 AND tax_minor >= 0 AND total_minor >= 0),
    CONSTRAINT invoices_total_adds_up CHECK (total_minor = subtotal_minor + tax_minor),
    CONSTRAINT invoices_period_complete CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CONSTRAINT invoices_period_order CHECK (period_end IS NULL OR period_end > period_start),
    CONSTRAINT invoices_period_needs_subscription CHECK (period_start IS NULL OR subscription_id IS NOT NULL),
    CONSTRAINT invoices_credit_note_corrects CHECK ((kind = 'credit_note') = (corrects_invoice_id IS NOT NULL)),
    CONSTRAINT invoices_number_when_issued CHECK ((status = 'draft') = (number_seq IS NULL) AND (number_seq IS NULL) = (number_year IS NULL)),
    CONSTRAINT invoices_issued_at_when_issued CHECK ((status = 'draft') = (issued_at IS NULL)),
    CONSTRAINT invoices_number_key UNIQUE (kind, number_year, number_seq)
);
-- Never two invoices for one subscription period: a retried or concurrent renewal run hits
-- this key instead of billing twice.
CREATE UNIQUE INDEX invoices_one_per_subscription_period
    ON invoices (subscription_id, period_start) WHERE kind = 'invoice' AND period_start IS NOT NULL;
CREATE INDEX invoices_account_idx ON invoices (account_id, created_at DESC);

CREATE TABLE invoice_number_sequences (
    kind     invoice_kind NOT NULL,
    year     integer NOT NULL,
    next_seq integer NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, year),
    CONSTRAINT invoice_number_sequences_positive CHECK (next_seq >= 1)
);

CREATE TABLE invoice_lines (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id       uuid NOT NULL REFERENCES invoices (id),
    position         integer NOT NULL,
    description      text NOT NULL,
    quantity         integer NOT NULL DEFAULT 1,
    unit_price_minor bigint NOT NULL,
    discount_minor   bigint NOT NULL DEFAULT 0,
    amount_minor     bigint NOT NULL,           -- quantity × unit price − discount
    tax_rate_bp      integer NOT NULL DEFAULT 0, -- basis points, stored on each line
    tax_minor        bigint NOT NULL DEFAULT 0,
    CONSTRAINT invoice_lines_position_key UNIQUE (invoice_id, position),
    CONSTRAINT invoice_lines_quantity_positive CHECK (quantity > 0),
    CONSTRAINT invoice_lines_money_non_negative CHECK (unit_price_minor >= 0 AND discount_minor >= 0 AND amount_minor >= 0 AND tax_minor >= 0),
    CONSTRAINT invoice_lines_amount_adds_up CHECK (amount_minor = quantity * unit_price_minor - discount_minor),
    CONSTRAINT invoice_lines_tax_rate_range CHECK (tax_rate_bp BETWEEN 0 AND 10000)
);

-- Issued invoices are immutable: only the status may move on (issued → paid or void).
CREATE FUNCTION invoices_immutable_once_issued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is issued and cannot be deleted', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' THEN
        IF (NEW.account_id, NEW.kind, NEW.number_year, NEW.number_seq, NEW.subscription_id, NEW.period_start,
            NEW.period_end, NEW.corrects_invoice_id, NEW.currency, NEW.subtotal_minor, NEW.tax_minor,
            NEW.total_minor, NEW.issued_at, NEW.due_at)
           IS DISTINCT FROM
           (OLD.account_id, OLD.kind, OLD.number_year, OLD.number_seq, OLD.subscription_id, OLD.period_start,
            OLD.period_end, OLD.corrects_invoice_id, OLD.currency, OLD.subtotal_minor, OLD.tax_minor,
            OLD.total_minor, OLD.issued_at, OLD.due_at) THEN
            RAISE EXCEPTION 'invoice % is issued and immutable; correct it with a credit note', OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        IF NOT ((OLD.status = NEW.status) OR (OLD.status = 'issued' AND NEW.status IN ('paid', 'void'))) THEN
            RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable_once_issued();

CREATE FUNCTION invoice_lines_only_on_drafts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    st invoice_status;
BEGIN
    SELECT status INTO st FROM invoices WHERE id = COALESCE(NEW.invoice_id, OLD.invoice_id);
    IF st IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'the lines of an issued invoice cannot change' USING ERRCODE = 'check_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;
CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_only_on_drafts();

CREATE TYPE payment_method AS ENUM ('account_credit', 'manual', 'stripe');

CREATE TABLE payments (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES accounts (id),
    -- The invoice paid, or NULL for a top-up of account credit.
    invoice_id   uuid REFERENCES invoices (id),
    method       payment_method NOT NULL,
    currency     text NOT NULL,
    amount_minor bigint NOT NULL,
    -- The gateway's id (Stripe event/payment id) or the admin's reference: each processed once.
    external_ref text,
    recorded_by  uuid REFERENCES accounts (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payments_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_external_ref_key UNIQUE (method, external_ref)
);
CREATE INDEX payments_account_idx ON payments (account_id);

-- ---------------------------------------------------------------- double-entry ledger
-- Every money movement is one ledger transaction whose entries balance (per currency):
-- checked by a constraint trigger at commit, so an unbalanced movement cannot be stored.
CREATE TYPE ledger_account_type AS ENUM ('asset', 'liability', 'revenue', 'expense');

CREATE TABLE ledger_accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- e.g. 'receivable', 'customer_credit', 'revenue', 'tax_payable', 'cash:stripe'
    code       text NOT NULL,
    type       ledger_account_type NOT NULL,
    -- The customer a sub-ledger belongs to (receivable and credit are per customer).
    account_id uuid REFERENCES accounts (id),
    currency   text NOT NULL,
    CONSTRAINT ledger_accounts_currency_iso CHECK (currency ~ '^[A-Z]{3}$')
);
CREATE UNIQUE INDEX ledger_accounts_key ON ledger_accounts (code, currency, COALESCE(account_id, '00000000-0000-0000-0000-000000000000'));

CREATE TABLE ledger_transactions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    description text NOT NULL,
    invoice_id  uuid REFERENCES invoices (id),
    payment_id  uuid REFERENCES payments (id),
    occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id    uuid NOT NULL REFERENCES ledger_transactions (id),
    ledger_account_id bigint NOT NULL REFERENCES ledger_accounts (id),
    debit_minor       bigint NOT NULL DEFAULT 0,
    credit_minor      bigint NOT NULL DEFAULT 0,
    CONSTRAINT ledger_entries_non_negative CHECK (debit_minor >= 0 AND credit_minor >= 0),
    CONSTRAINT ledger_entries_one_side CHECK ((debit_minor = 0) <> (credit_minor = 0))
);
CREATE INDEX ledger_entries_tx_idx ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (ledger_account_id);

CREATE FUNCTION ledger_transaction_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
BEGIN
    SELECT la.currency INTO unbalanced
      FROM ledger_entries e JOIN ledger_accounts la ON la.id = e.ledger_account_id
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY la.currency
    HAVING sum(e.debit_minor) <> sum(e.credit_minor)
     LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %', NEW.transaction_id, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_balance AFTER INSERT OR UPDATE ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: post a reversing transaction instead' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- ---------------------------------------------------------------- instances (VPS)
CREATE TYPE desired_state AS ENUM ('running', 'stopped', 'suspended', 'terminated');
CREATE TYPE observed_state AS ENUM (
    'pending', 'waiting_for_capacity', 'creating', 'stopped', 'running', 'suspended', 'crashed',
    'destroying', 'destroyed', 'unknown', 'error');

-- The id is chosen by the panel before any host is asked, so a retried create on a host can
-- never make a second instance.
CREATE TABLE instances (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id),
    subscription_id uuid REFERENCES subscriptions (id),
    plan_id         bigint NOT NULL REFERENCES plans (id),
    kind            instance_kind NOT NULL,
    os_template_id  uuid NOT NULL REFERENCES os_templates (id),
    hostname        text NOT NULL,
    host_id         uuid REFERENCES hosts (id),   -- NULL until placed
    desired_state   desired_state NOT NULL DEFAULT 'running',
    observed_state  observed_state NOT NULL DEFAULT 'pending',
    observed_at     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    terminated_at   timestamptz,
    CONSTRAINT instances_terminated_at CHECK ((terminated_at IS NULL) OR desired_state = 'terminated')
);
CREATE UNIQUE INDEX instances_one_live_per_subscription ON instances (subscription_id)
    WHERE subscription_id IS NOT NULL AND desired_state <> 'terminated';
CREATE INDEX instances_host_idx ON instances (host_id) WHERE host_id IS NOT NULL;
CREATE INDEX instances_account_idx ON instances (account_id);

-- Addresses are rows so that "never two instances with one address" is a unique key.
CREATE TABLE ip_addresses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pool_id     uuid NOT NULL REFERENCES ip_pools (id),
    address     inet NOT NULL UNIQUE,
    instance_id uuid REFERENCES instances (id),
    assigned_at timestamptz,
    CONSTRAINT ip_addresses_host_address CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END),
    CONSTRAINT ip_addresses_assigned_at CHECK ((instance_id IS NULL) = (assigned_at IS NULL))
);
CREATE INDEX ip_addresses_free_idx ON ip_addresses (pool_id) WHERE instance_id IS NULL;
CREATE INDEX ip_addresses_instance_idx ON ip_addresses (instance_id) WHERE instance_id IS NOT NULL;

-- ---------------------------------------------------------------- durable jobs
CREATE TYPE job_status AS ENUM ('queued', 'running', 'succeeded', 'dead');

-- Claimed with FOR UPDATE SKIP LOCKED under a lease; retried with backoff; dead-lettered with
-- the reason after max_attempts. dedupe_key makes enqueueing idempotent.
CREATE TABLE jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue        text NOT NULL DEFAULT 'default',
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    instance_id  uuid REFERENCES instances (id),
    dedupe_key   text UNIQUE,
    status       job_status NOT NULL DEFAULT 'queued',
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 10,
    run_after    timestamptz NOT NULL DEFAULT now(),
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_attempts_range CHECK (attempts >= 0 AND max_attempts >= 1),
    CONSTRAINT jobs_lease_when_running CHECK ((status = 'running') = (locked_until IS NOT NULL))
);
CREATE INDEX jobs_ready_idx ON jobs (queue, run_after) WHERE status = 'queued';
CREATE INDEX jobs_instance_idx ON jobs (instance_id) WHERE instance_id IS NOT NULL;

-- ---------------------------------------------------------------- audit log
-- Every admin and reseller action: who, what, when, from where. Append-only.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid REFERENCES accounts (id),
    actor_kind  text NOT NULL,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    remote_addr inet,
    details     jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT audit_log_actor_kind CHECK (actor_kind IN ('admin', 'reseller', 'customer', 'api_key', 'system'))
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- The reseller API: keys, terms (wholesale discount and quotas), idempotent POSTs, and webhook
-- events with their deliveries.

-- A reseller's customers are its own: their emails are unique per reseller, not across the
-- installation, so one reseller cannot learn another's customers by a refused email. Accounts
-- that log in here (reseller_id IS NULL) keep one global namespace.
DROP INDEX accounts_email_key;
CREATE UNIQUE INDEX accounts_email_key ON accounts (email) WHERE reseller_id IS NULL;
CREATE UNIQUE INDEX accounts_reseller_email_key ON accounts (reseller_id, email)
    WHERE reseller_id IS NOT NULL AND status <> 'closed';

-- ---------------------------------------------------------------- reseller terms
-- What a reseller pays and may hold. Wholesale price = retail − retail × discount_bp / 10 000
-- (rounded down), so every plan has a wholesale price in every currency it has a retail one.
-- Memory quota counts guaranteed memory: the resource the provider commits.
CREATE TABLE reseller_terms (
    reseller_id    uuid PRIMARY KEY REFERENCES accounts (id),
    discount_bp    integer NOT NULL DEFAULT 2000,
    max_servers    integer NOT NULL DEFAULT 50,
    max_vcpus      integer NOT NULL DEFAULT 200,
    max_memory_mib bigint  NOT NULL DEFAULT 262144,
    max_disk_gib   bigint  NOT NULL DEFAULT 5000,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reseller_terms_discount_range CHECK (discount_bp BETWEEN 0 AND 10000),
    CONSTRAINT reseller_terms_quotas_non_negative CHECK (max_servers >= 0 AND max_vcpus >= 0 AND max_memory_mib >= 0 AND max_disk_gib >= 0)
);

-- A server's owner (a reseller through the API) may suspend it on its own account, apart from
-- billing's suspension: paying an overdue invoice must not resume what the owner suspended,
-- and lifting the owner's suspension returns the server to the state it had (a stopped
-- server stays stopped). NULL: the owner has not suspended it.
ALTER TABLE instances ADD COLUMN owner_suspended_from desired_state;
ALTER TABLE instances ADD CONSTRAINT instances_owner_suspended_from
    CHECK (owner_suspended_from IS NULL OR owner_suspended_from IN ('running', 'stopped'));

-- A reseller may suspend its customer's account and lift that suspension, but not one the
-- provider's admins made.
ALTER TABLE accounts ADD COLUMN suspended_by_reseller boolean NOT NULL DEFAULT false;
-- Suspending a customer through the API suspends its servers with it (as an owner's
-- suspension, remembering each one's state); reactivating the customer restores them.
ALTER TABLE instances ADD COLUMN suspended_with_account boolean NOT NULL DEFAULT false;

-- The API lists servers newest first with a (created_at, id) cursor: pages walk this index
-- instead of sorting every server.
CREATE INDEX instances_created_idx ON instances (created_at DESC, id DESC);
CREATE INDEX accounts_created_idx ON accounts (created_at DESC, id DESC) WHERE role = 'customer';

-- ---------------------------------------------------------------- API keys
-- The key is shown once. Stored: its public prefix (to find it and to recognise it in logs)
-- and the SHA-256 of the whole key. Keys carry 190 bits of randomness, so a fast hash is
-- safe here, unlike passwords (argon2id), and costs nothing per request.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id    uuid NOT NULL REFERENCES accounts (id),
    name          text NOT NULL,
    prefix        text NOT NULL UNIQUE,
    secret_sha256 bytea NOT NULL,
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT api_keys_name_present CHECK (btrim(name) <> '' AND length(name) <= 100),
    CONSTRAINT api_keys_prefix_format CHECK (prefix ~ '^vsl_[a-z0-9]{8}$'),
    CONSTRAINT api_keys_hash_length CHECK (length(secret_sha256) = 32),
    CONSTRAINT api_keys_scopes_known CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['read', 'write']::text[])
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

-- ---------------------------------------------------------------- idempotency
-- One row per (account, Idempotency-Key), written in the same transaction as the request's
-- effect: a concurrent request with the same key waits on the primary key and then replays the
-- stored response; a crash rolls both back. Rows older than 24 h are ignored and pruned.
CREATE TABLE idempotency_keys (
    account_id      uuid NOT NULL REFERENCES accounts (id),
    key             text NOT NULL,
    fingerprint     bytea NOT NULL,
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key),
    CONSTRAINT idempotency_keys_key_length CHECK (length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- ---------------------------------------------------------------- webhooks
CREATE TABLE webhook_endpoints (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id),
    url        text NOT NULL,
    -- The HMAC key; kept readable because signing needs it (shown to its owner only).
    secret     text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_url_format CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2000),
    CONSTRAINT webhook_endpoints_secret_length CHECK (length(secret) >= 32)
);
CREATE INDEX webhook_endpoints_account_idx ON webhook_endpoints (account_id);

-- Events for a reseller, written by triggers in the transaction that made the change, so an
-- event is never lost nor emitted for a change that rolled back.
CREATE TABLE api_events (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id),
    type       text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT api_events_type_format CHECK (type ~ '^[a-z]+\.[a-z_]+$')
);
CREATE INDEX api_events_account_idx ON api_events (account_id, created_at DESC);

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES api_events (id),
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_once UNIQUE (event_id, endpoint_id),
    CONSTRAINT webhook_deliveries_status CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_delivered_at CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);

-- Records an event for a reseller and queues one delivery per enabled endpoint.
CREATE FUNCTION emit_api_event(reseller uuid, event_type text, payload jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ev uuid;
BEGIN
    INSERT INTO api_events (account_id, type, data) VALUES (reseller, event_type, payload) RETURNING id INTO ev;
    INSERT INTO webhook_deliveries (event_id, endpoint_id)
        SELECT ev, e.id FROM webhook_endpoints e WHERE e.account_id = reseller AND e.enabled;
END $$;

-- A reseller's server changed state (desired or observed).
CREATE FUNCTION instances_api_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    reseller uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.desired_state IS NOT DISTINCT FROM OLD.desired_state
       AND NEW.observed_state IS NOT DISTINCT FROM OLD.observed_state
       AND NEW.plan_id IS NOT DISTINCT FROM OLD.plan_id THEN
        RETURN NULL;
    END IF;
    SELECT a.reseller_id INTO reseller FROM accounts a WHERE a.id = NEW.account_id;
    IF reseller IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM emit_api_event(reseller,
        CASE WHEN TG_OP = 'INSERT' THEN 'server.created' ELSE 'server.updated' END,
        jsonb_build_object('id', NEW.id, 'customer_id', NEW.account_id, 'hostname', NEW.hostname,
                           'desired_state', NEW.desired_state, 'observed_state', NEW.observed_state,
                           'previous_observed_state', CASE WHEN TG_OP = 'UPDATE' THEN OLD.observed_state::text END));
    RETURN NULL;
END $$;
CREATE TRIGGER instances_api_event AFTER INSERT OR UPDATE OF desired_state, observed_state, plan_id ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_api_event();

-- A reseller's (wholesale) invoice was issued, paid or voided.
CREATE FUNCTION invoices_api_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'draft' OR (TG_OP = 'UPDATE' AND NEW.status = OLD.status) THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = NEW.account_id AND a.role = 'reseller') THEN
        RETURN NULL;
    END IF;
    PERFORM emit_api_event(NEW.account_id, 'invoice.' || NEW.status::text,
        jsonb_build_object('id', NEW.id, 'kind', NEW.kind, 'subscription_id', NEW.subscription_id,
                           'currency', NEW.currency, 'total_minor', NEW.total_minor,
                           'due_at', NEW.due_at, 'status', NEW.status));
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_api_event AFTER INSERT OR UPDATE OF status ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_api_event();

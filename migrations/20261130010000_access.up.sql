-- The customer's way into their VPS (issue 13). Only public keys and crypt(3) hashes are kept:
-- the clear root password never reaches the database.

-- Named SSH public keys an account keeps and picks from when ordering.
CREATE TABLE ssh_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL CONSTRAINT ssh_keys_name_length CHECK (length(name) BETWEEN 1 AND 100),
    public_key  text NOT NULL CONSTRAINT ssh_keys_public_key_line CHECK (public_key !~ '[\r\n]'),
    fingerprint text NOT NULL CONSTRAINT ssh_keys_fingerprint_format CHECK (fingerprint ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ssh_keys_once_per_account UNIQUE (account_id, fingerprint)
);

-- vessel_core::Access as JSON: {"ssh_keys": [lines], "root_password_hash": "$6$…"}. Chosen at
-- order time, carried by the order until payment creates the instance, then the instance's
-- own (reinstall and password resets change it there).
ALTER TABLE orders ADD COLUMN access jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT orders_access_object CHECK (jsonb_typeof(access) = 'object');
ALTER TABLE instances ADD COLUMN access jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT instances_access_object CHECK (jsonb_typeof(access) = 'object');
-- The "your server is ready" mail goes once, the first time the host reports it running.
ALTER TABLE instances ADD COLUMN ready_mailed_at timestamptz;

-- Every path that creates an instance from an order (a customer's payment, a reseller's API
-- call) gives it that order's access: one rule, in one place, whatever the INSERT names.
CREATE FUNCTION instances_access_from_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.access = '{}'::jsonb AND NEW.subscription_id IS NOT NULL THEN
        SELECT o.access INTO NEW.access
          FROM subscriptions s JOIN orders o ON o.id = s.order_id
         WHERE s.id = NEW.subscription_id;
        NEW.access := coalesce(NEW.access, '{}'::jsonb);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER instances_access_from_order BEFORE INSERT ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_access_from_order();

-- "Your server is ready": queued in the same statement that first records the instance
-- running (whichever path sees it first: a job or the reconciler), once. A reseller's
-- customer is the reseller's to tell (its webhook says so), so only direct customers get it.
CREATE FUNCTION instances_ready_mail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.observed_state = 'running' AND NEW.ready_mailed_at IS NULL THEN
        NEW.ready_mailed_at := now();
        INSERT INTO email_outbox (to_address, template, data, dedupe_key)
        SELECT a.email, 'server_ready',
               jsonb_build_object(
                   'instance_id', NEW.id, 'hostname', NEW.hostname, 'name', a.display_name,
                   'address', (SELECT host(ad.address) FROM ip_addresses ad WHERE ad.instance_id = NEW.id
                                ORDER BY family(ad.address) LIMIT 1),
                   'network', coalesce((SELECT string_agg(host(ad.address) || '/' || masklen(p.network) || ' (gateway ' || host(p.gateway) || ')', ', '
                                                ORDER BY family(ad.address))
                                          FROM ip_addresses ad JOIN ip_pools p ON p.id = ad.pool_id WHERE ad.instance_id = NEW.id), ''),
                   'fingerprints', coalesce((SELECT string_agg('SHA256:' || rtrim(encode(sha256(decode(split_part(k, ' ', 2), 'base64')), 'base64'), '='), ', ')
                                               FROM jsonb_array_elements_text(NEW.access -> 'ssh_keys') k), ''),
                   'has_password', NEW.access ? 'root_password_hash'),
               'server_ready:' || NEW.id
          FROM accounts a WHERE a.id = NEW.account_id AND a.reseller_id IS NULL
        ON CONFLICT (dedupe_key) DO NOTHING;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER instances_ready_mail BEFORE UPDATE OF observed_state ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_ready_mail();

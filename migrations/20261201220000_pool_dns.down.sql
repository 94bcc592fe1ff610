CREATE OR REPLACE FUNCTION instances_ready_mail() RETURNS trigger LANGUAGE plpgsql AS $$
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

ALTER TABLE ip_pools DROP COLUMN dns;

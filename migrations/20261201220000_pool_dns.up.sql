-- The resolvers a pool's servers use (issue 13, item 5): set by the admin per pool, shown on
-- the server's page and in its "ready" mail, and written into a container's resolv.conf.
-- Existing pools get public resolvers of their family (what a new pool gets by default).
ALTER TABLE ip_pools ADD COLUMN dns inet[] NOT NULL DEFAULT '{}'
    CONSTRAINT ip_pools_dns_few CHECK (cardinality(dns) <= 4);
UPDATE ip_pools SET dns = CASE WHEN family(network) = 4 THEN '{1.1.1.1,9.9.9.9}'::inet[] ELSE '{2606:4700:4700::1111,2620:fe::fe}'::inet[] END;

-- The ready mail also names the gateway, the netmask and the resolvers.
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
                   'has_password', NEW.access ? 'root_password_hash',
                   -- The first address's network (gateway, netmask) and its pool's resolvers.
                   'gateway', coalesce((SELECT host(p.gateway) FROM ip_addresses ad JOIN ip_pools p ON p.id = ad.pool_id
                                         WHERE ad.instance_id = NEW.id ORDER BY family(ad.address) LIMIT 1), ''),
                   'netmask', coalesce((SELECT CASE WHEN family(p.network) = 4 THEN host(netmask(p.network)) ELSE '/' || masklen(p.network) END
                                          FROM ip_addresses ad JOIN ip_pools p ON p.id = ad.pool_id
                                         WHERE ad.instance_id = NEW.id ORDER BY family(ad.address) LIMIT 1), ''),
                   'dns', coalesce((SELECT array_to_string(ARRAY(SELECT host(d) FROM unnest(p.dns) d), ', ')
                                      FROM ip_addresses ad JOIN ip_pools p ON p.id = ad.pool_id
                                     WHERE ad.instance_id = NEW.id ORDER BY family(ad.address) LIMIT 1), '')),
               'server_ready:' || NEW.id
          FROM accounts a WHERE a.id = NEW.account_id AND a.reseller_id IS NULL
        ON CONFLICT (dedupe_key) DO NOTHING;
    END IF;
    RETURN NEW;
END $$;

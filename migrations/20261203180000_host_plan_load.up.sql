-- Each host's load as placement admits against it: how many live instances of each plan it
-- carries. Kept by the trigger that keeps `hosts.guaranteed_memory_mib`, in the same
-- transaction as the instance change, so a placement reads a handful of (plan, count) rows
-- instead of every instance on the host: its cost grows with candidate hosts, not instances.
-- Exact under concurrency: every change of a host's load first updates that host's row,
-- which a placement holds `FOR UPDATE` while it reads the counts and decides.
CREATE TABLE host_plan_load (
    host_id uuid NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    plan_id bigint NOT NULL REFERENCES plans(id),
    instances integer NOT NULL CHECK (instances >= 0),
    PRIMARY KEY (host_id, plan_id)
);

CREATE OR REPLACE FUNCTION instances_host_guaranteed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_live boolean := TG_OP IN ('UPDATE', 'DELETE') AND OLD.host_id IS NOT NULL AND OLD.desired_state <> 'terminated';
    new_live boolean := TG_OP IN ('INSERT', 'UPDATE') AND NEW.host_id IS NOT NULL AND NEW.desired_state <> 'terminated';
    g bigint := 0;
BEGIN
    -- An update that leaves the instance's host, plan and liveness alone changes no load:
    -- it does not touch (or wait for) the host's row.
    IF TG_OP = 'UPDATE' AND old_live = new_live AND OLD.host_id IS NOT DISTINCT FROM NEW.host_id AND OLD.plan_id = NEW.plan_id THEN
        RETURN NULL;
    END IF;
    IF old_live THEN
        SELECT memory_guaranteed_mib INTO g FROM plans WHERE id = OLD.plan_id;
        UPDATE hosts SET guaranteed_memory_mib = guaranteed_memory_mib - g WHERE id = OLD.host_id;
        UPDATE host_plan_load SET instances = instances - 1 WHERE host_id = OLD.host_id AND plan_id = OLD.plan_id;
    END IF;
    IF new_live THEN
        SELECT memory_guaranteed_mib INTO g FROM plans WHERE id = NEW.plan_id;
        UPDATE hosts SET guaranteed_memory_mib = guaranteed_memory_mib + g WHERE id = NEW.host_id;
        INSERT INTO host_plan_load (host_id, plan_id, instances) VALUES (NEW.host_id, NEW.plan_id, 1)
            ON CONFLICT (host_id, plan_id) DO UPDATE SET instances = host_plan_load.instances + 1;
    END IF;
    RETURN NULL;
END $$;

INSERT INTO host_plan_load (host_id, plan_id, instances)
SELECT host_id, plan_id, count(*) FROM instances
 WHERE host_id IS NOT NULL AND desired_state <> 'terminated' GROUP BY host_id, plan_id;

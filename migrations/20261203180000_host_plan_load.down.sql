CREATE OR REPLACE FUNCTION instances_host_guaranteed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_g bigint := 0;
    new_g bigint := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.host_id IS NOT NULL AND OLD.desired_state <> 'terminated' THEN
        SELECT memory_guaranteed_mib INTO old_g FROM plans WHERE id = OLD.plan_id;
        UPDATE hosts SET guaranteed_memory_mib = guaranteed_memory_mib - old_g WHERE id = OLD.host_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.host_id IS NOT NULL AND NEW.desired_state <> 'terminated' THEN
        SELECT memory_guaranteed_mib INTO new_g FROM plans WHERE id = NEW.plan_id;
        UPDATE hosts SET guaranteed_memory_mib = guaranteed_memory_mib + new_g WHERE id = NEW.host_id;
    END IF;
    RETURN NULL;
END $$;
DROP TABLE IF EXISTS host_plan_load;

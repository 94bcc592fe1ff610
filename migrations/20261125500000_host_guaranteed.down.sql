DROP INDEX IF EXISTS instances_account_host_idx;
DROP TRIGGER IF EXISTS instances_host_guaranteed ON instances;
DROP FUNCTION IF EXISTS instances_host_guaranteed();
ALTER TABLE hosts DROP COLUMN IF EXISTS guaranteed_memory_mib;

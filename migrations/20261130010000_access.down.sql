DROP TRIGGER IF EXISTS instances_ready_mail ON instances;
DROP FUNCTION IF EXISTS instances_ready_mail();
DROP TRIGGER IF EXISTS instances_access_from_order ON instances;
DROP FUNCTION IF EXISTS instances_access_from_order();
ALTER TABLE instances DROP COLUMN IF EXISTS ready_mailed_at;
ALTER TABLE instances DROP COLUMN IF EXISTS access;
ALTER TABLE orders DROP COLUMN IF EXISTS access;
DROP TABLE IF EXISTS ssh_keys;

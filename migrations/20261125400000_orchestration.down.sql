DROP INDEX IF EXISTS instances_desired_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS waiting_reason;
DROP TABLE IF EXISTS usage_samples;

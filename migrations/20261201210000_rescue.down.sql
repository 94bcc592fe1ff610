ALTER TABLE instances DROP COLUMN rescue;

ALTER TABLE instances DROP COLUMN waiting_since;

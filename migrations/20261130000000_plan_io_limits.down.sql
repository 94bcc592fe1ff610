ALTER TABLE plans DROP COLUMN IF EXISTS io_read_bps, DROP COLUMN IF EXISTS io_write_bps,
    DROP COLUMN IF EXISTS io_read_iops, DROP COLUMN IF EXISTS io_write_iops;

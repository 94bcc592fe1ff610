-- Hard disk I/O ceilings per plan (bytes/s and IOPS, read and write), enforced by each host on
-- the VPS's disk. NULL: no ceiling in that direction. The floors match vessel-core's IoLimits.
ALTER TABLE plans
    ADD COLUMN io_read_bps bigint CONSTRAINT plans_io_read_bps_min CHECK (io_read_bps >= 1048576),
    ADD COLUMN io_write_bps bigint CONSTRAINT plans_io_write_bps_min CHECK (io_write_bps >= 1048576),
    ADD COLUMN io_read_iops bigint CONSTRAINT plans_io_read_iops_min CHECK (io_read_iops >= 10),
    ADD COLUMN io_write_iops bigint CONSTRAINT plans_io_write_iops_min CHECK (io_write_iops >= 10);

-- Orchestration: usage samples pulled from hosts, for graphs and bandwidth metering.
CREATE TABLE usage_samples (
    instance_id        uuid NOT NULL REFERENCES instances (id),
    at                 timestamptz NOT NULL,
    cpu_time_ns        bigint NOT NULL,
    memory_bytes       bigint NOT NULL,
    memory_peak_bytes  bigint NOT NULL,
    memory_burst_bytes bigint NOT NULL,
    disk_used_bytes    bigint NOT NULL,
    net_rx_bytes       bigint NOT NULL,
    net_tx_bytes       bigint NOT NULL,
    PRIMARY KEY (instance_id, at),
    CONSTRAINT usage_samples_non_negative CHECK (cpu_time_ns >= 0 AND memory_bytes >= 0 AND memory_peak_bytes >= 0
        AND memory_burst_bytes >= 0 AND disk_used_bytes >= 0 AND net_rx_bytes >= 0 AND net_tx_bytes >= 0)
);

-- Jobs waiting for something outside their control (no host has room) do not use up their
-- attempts; this says why they wait.
ALTER TABLE jobs ADD COLUMN waiting_reason text;

CREATE INDEX instances_desired_idx ON instances (host_id, desired_state);

-- Each server's inbound firewall (issue 20): the customer's ordered rules and default verdict,
-- as core's `Firewall` serialises it (read back through its validating deserialiser, so a row
-- the host could not apply is never sent). No row: the open default (everything accepted).
CREATE TABLE instance_firewalls (
    instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    firewall jsonb NOT NULL CHECK (
        jsonb_typeof(firewall) = 'object'
        AND firewall->>'default_policy' IN ('accept', 'drop')
        AND jsonb_typeof(firewall->'rules') = 'array'
        AND jsonb_array_length(firewall->'rules') <= 64
    ),
    updated_at timestamptz NOT NULL DEFAULT now()
);

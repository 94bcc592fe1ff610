-- The id of the request that queued a job: its calls to hosts carry it, so one request can be
-- followed from the panel's log to the host's.
ALTER TABLE jobs ADD COLUMN request_id text
    CONSTRAINT jobs_request_id_format CHECK (request_id ~ '^[A-Za-z0-9_.:-]{1,64}$');

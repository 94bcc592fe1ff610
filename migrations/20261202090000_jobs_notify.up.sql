-- Job runners wake the moment a job is committed (issue 18): a NOTIFY per inserting statement,
-- delivered by PostgreSQL at commit (never for a rolled-back insert). Runners still poll as a
-- fallback, for jobs that become due later (backoff, run_after) and for a lost listener.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vessel_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();

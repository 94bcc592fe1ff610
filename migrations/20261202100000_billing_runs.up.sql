-- Each `panel billing run` / `panel billing dunning` (a timer's one-shot process) records how it
-- went, so the panel's metrics endpoint can report billing runs it did not run itself.
CREATE TABLE billing_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean NOT NULL,
    CONSTRAINT billing_runs_kind CHECK (kind IN ('renewal', 'dunning')),
    CONSTRAINT billing_runs_order CHECK (finished_at >= started_at)
);
CREATE INDEX billing_runs_kind_idx ON billing_runs (kind, finished_at DESC);

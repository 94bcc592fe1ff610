-- Sign-in state for the web pages. Secrets are stored hashed (sha256 of a 256-bit random
-- token): a leaked table lets nobody in.

-- Optional TOTP two-factor: the secret is set on enrolment, enabled only after a code from
-- the customer's authenticator has been verified against it.
ALTER TABLE accounts
    ADD COLUMN totp_secret     text,
    ADD COLUMN totp_enabled_at timestamptz,
    -- The last 30-second step whose code was accepted: a code works once, even within its window.
    ADD COLUMN totp_last_step  bigint,
    ADD CONSTRAINT accounts_totp_needs_secret CHECK (totp_enabled_at IS NULL OR totp_secret IS NOT NULL);

-- Server-side sessions, so logging out, a password reset or a suspension revokes them on
-- every panel process at once. The cookie carries the token; only its hash is stored.
CREATE TABLE sessions (
    token_sha256  text PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Password accepted, TOTP code still owed: the session grants nothing until it is given.
    awaiting_totp boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT sessions_token_hex CHECK (token_sha256 ~ '^[0-9a-f]{64}$')
);
CREATE INDEX sessions_account_idx ON sessions (account_id);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

-- Single-use, expiring tokens mailed to the customer (email verification, password reset).
CREATE TYPE account_token_purpose AS ENUM ('verify_email', 'password_reset');
CREATE TABLE account_tokens (
    token_sha256 text PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose      account_token_purpose NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    CONSTRAINT account_tokens_token_hex CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT account_tokens_expiry_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX account_tokens_account_idx ON account_tokens (account_id, purpose);

-- Failed log-ins, per account and per remote address, in the database so that every panel
-- process counts the same attempts.
CREATE TABLE login_failures (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope  text NOT NULL,   -- 'account' or 'address'
    key    text NOT NULL,   -- the normalised email, or the remote address
    at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT login_failures_scope CHECK (scope IN ('account', 'address'))
);
CREATE INDEX login_failures_key_idx ON login_failures (scope, key, at DESC);

-- Issue 15, sign-in that holds: limits on requests that mail a link (per client address and per
-- target address), host join tokens that expire, single-use TOTP recovery codes (stored as
-- sha256 of 80 random bits), and the provider's setting that admins and resellers must use 2FA.
ALTER TABLE login_failures DROP CONSTRAINT login_failures_scope;
ALTER TABLE login_failures ADD CONSTRAINT login_failures_scope
    CHECK (scope IN ('account', 'address', 'account_address', 'mail_address', 'mail_target'));

ALTER TABLE hosts ADD COLUMN join_token_expires_at timestamptz;
-- Tokens handed out before expiry existed get the default lifetime from now.
UPDATE hosts SET join_token_expires_at = now() + interval '24 hours' WHERE join_token_sha256 IS NOT NULL;
ALTER TABLE hosts ADD CONSTRAINT hosts_join_token_expires
    CHECK (join_token_sha256 IS NULL OR join_token_expires_at IS NOT NULL);

CREATE TABLE totp_recovery_codes (
    id           bigserial PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_sha256  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_at      timestamptz,
    UNIQUE (account_id, code_sha256)
);

-- One row: the provider's security settings.
CREATE TABLE security_settings (
    id                         boolean PRIMARY KEY DEFAULT true CHECK (id),
    require_staff_two_factor   boolean NOT NULL DEFAULT false,
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
INSERT INTO security_settings (id) VALUES (true);

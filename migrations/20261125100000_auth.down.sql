DROP TABLE login_failures;
DROP TABLE account_tokens;
DROP TYPE account_token_purpose;
DROP TABLE sessions;
ALTER TABLE accounts
    DROP CONSTRAINT accounts_totp_needs_secret,
    DROP COLUMN totp_enabled_at,
    DROP COLUMN totp_secret;

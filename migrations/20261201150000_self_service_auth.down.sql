DROP TABLE security_settings;
DROP TABLE totp_recovery_codes;
ALTER TABLE hosts DROP CONSTRAINT hosts_join_token_expires;
ALTER TABLE hosts DROP COLUMN join_token_expires_at;
DELETE FROM login_failures WHERE scope IN ('mail_address', 'mail_target');
ALTER TABLE login_failures DROP CONSTRAINT login_failures_scope;
ALTER TABLE login_failures ADD CONSTRAINT login_failures_scope CHECK (scope IN ('account', 'address', 'account_address'));

DELETE FROM login_failures WHERE scope = 'account_address';
ALTER TABLE login_failures DROP CONSTRAINT login_failures_scope;
ALTER TABLE login_failures ADD CONSTRAINT login_failures_scope CHECK (scope IN ('account', 'address'));

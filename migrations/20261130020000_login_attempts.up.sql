-- Log-in limits per account *from one address* (the strict one: 5), per account from anywhere
-- (a high cap against distributed guessing, so an attacker elsewhere cannot lock the rightful
-- owner out with a handful of tries), and per address. Attempts are reserved before the
-- password is checked (see panel/src/auth.rs), so parallel guesses cannot exceed them.
ALTER TABLE login_failures DROP CONSTRAINT login_failures_scope;
ALTER TABLE login_failures ADD CONSTRAINT login_failures_scope CHECK (scope IN ('account', 'address', 'account_address'));

-- A new reseller's invitation is its own single-use token (valid for days), not a password reset.
ALTER TYPE account_token_purpose ADD VALUE IF NOT EXISTS 'reseller_invite';

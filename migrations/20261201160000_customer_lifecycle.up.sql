-- Issue 15, the customer's service lifecycle: a subscription cancelled at the end of its period
-- is not renewed and ends then; a new email address waits here until the link mailed to it is
-- followed.
ALTER TABLE subscriptions ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false;
ALTER TABLE accounts ADD COLUMN pending_email text;
ALTER TYPE account_token_purpose ADD VALUE IF NOT EXISTS 'change_email';

-- The enum value 'change_email' stays (PostgreSQL cannot drop one); no row uses it afterwards.
DELETE FROM account_tokens WHERE purpose::text = 'change_email';
ALTER TABLE accounts DROP COLUMN pending_email;
ALTER TABLE subscriptions DROP COLUMN cancel_at_period_end;

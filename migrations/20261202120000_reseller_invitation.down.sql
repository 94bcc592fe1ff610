-- The enum value 'reseller_invite' stays (PostgreSQL cannot drop one); no row uses it afterwards.
DELETE FROM account_tokens WHERE purpose::text = 'reseller_invite';

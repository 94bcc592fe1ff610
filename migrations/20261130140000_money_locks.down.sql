ALTER TABLE coupons DROP CONSTRAINT coupons_redemptions_within_max, DROP COLUMN redemptions;
DROP TRIGGER ledger_entries_credit_balance ON ledger_entries;
DROP FUNCTION ledger_credit_balances();
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_balance_only_on_credit,
    DROP CONSTRAINT ledger_accounts_credit_never_negative, DROP COLUMN balance_minor;

-- Issue 14: credit is spent once and coupons are redeemed within their limit, under row
-- locks that parallel requests cannot slip past, with the database as the last word.

-- Each customer's credit ledger account carries its balance (Σ debits − Σ credits; credit is
-- a liability, so money held for the customer is a negative number here). The row is what a
-- payment locks before it reads the balance (billing::payments::apply_credit), so two
-- payments spending the same credit run one after the other; and the CHECK refuses any
-- posting, from any path, that would take a customer's credit below zero.
ALTER TABLE ledger_accounts ADD COLUMN balance_minor bigint NOT NULL DEFAULT 0;
UPDATE ledger_accounts la SET balance_minor = s.b
  FROM (SELECT ledger_account_id, sum(debit_minor - credit_minor)::bigint AS b FROM ledger_entries GROUP BY 1) s
 WHERE s.ledger_account_id = la.id AND la.code = 'credit';
ALTER TABLE ledger_accounts
    ADD CONSTRAINT ledger_accounts_credit_never_negative CHECK (code <> 'credit' OR balance_minor <= 0),
    -- Only credit accounts keep a running balance: the shared and receivable rows would
    -- otherwise become one hot lock every posting waits on.
    ADD CONSTRAINT ledger_accounts_balance_only_on_credit CHECK (code = 'credit' OR balance_minor = 0);

CREATE FUNCTION ledger_credit_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts la SET balance_minor = la.balance_minor + d.delta
      FROM (SELECT ledger_account_id, sum(debit_minor - credit_minor)::bigint AS delta FROM new_entries GROUP BY 1) d
     WHERE la.id = d.ledger_account_id AND la.code = 'credit';
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_credit_balance AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_credit_balances();

-- Redemptions are counted on the coupon row itself, incremented by a conditional UPDATE that
-- re-reads the newest row version (db::subscriptions::redeem_coupon); the CHECK backs it up.
-- NOT VALID: a coupon the old race already over-redeemed stays as it is, and is full.
ALTER TABLE coupons ADD COLUMN redemptions integer NOT NULL DEFAULT 0;
UPDATE coupons c SET redemptions = (SELECT count(*) FROM orders o WHERE o.coupon_id = c.id);
ALTER TABLE coupons ADD CONSTRAINT coupons_redemptions_within_max
    CHECK (redemptions >= 0 AND (max_redemptions IS NULL OR redemptions <= max_redemptions)) NOT VALID;

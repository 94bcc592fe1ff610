-- Issue 14: invoices are due after the provider's payment terms (net N days), not the moment
-- they are issued. One row; `panel serve` and `panel billing` write the configured value
-- (`billing.payment_terms_days`) at start, so every path that issues reads the same number.
CREATE TABLE billing_settings (
    singleton          boolean PRIMARY KEY DEFAULT true,
    payment_terms_days integer NOT NULL DEFAULT 14,
    CONSTRAINT billing_settings_one_row CHECK (singleton),
    CONSTRAINT billing_settings_terms_range CHECK (payment_terms_days BETWEEN 0 AND 365)
);
INSERT INTO billing_settings DEFAULT VALUES;

-- What a payer owes past its due date is looked up on every order and server creation.
CREATE INDEX invoices_overdue_idx ON invoices (account_id, due_at) WHERE status = 'issued' AND kind = 'invoice';

-- The same guarantees as the row-level triggers of the initial schema, checked once per
-- statement over its transition table: a renewal batch of a thousand invoices runs two
-- checks instead of four thousand. Consequence, by design: a ledger transaction's entries
-- are inserted in one statement (ledger::post and the batch posting both do).

DROP TRIGGER ledger_entries_balance ON ledger_entries;

CREATE FUNCTION ledger_statement_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced uuid;
BEGIN
    SELECT e.transaction_id INTO unbalanced
      FROM ledger_entries e JOIN ledger_accounts la ON la.id = e.ledger_account_id
     -- = ANY(ARRAY(...)) keeps this an index lookup per transaction: a transition table has no
     -- statistics, and a join would scan the whole ledger on every statement.
     WHERE e.transaction_id = ANY (ARRAY(SELECT DISTINCT transaction_id FROM new_entries))
     GROUP BY e.transaction_id, la.currency
    HAVING sum(e.debit_minor) <> sum(e.credit_minor)
     LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', unbalanced USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_statement_balances();

DROP TRIGGER invoice_lines_immutable ON invoice_lines;

CREATE FUNCTION invoice_lines_insert_only_on_drafts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoices i WHERE i.id = ANY (ARRAY(SELECT invoice_id FROM new_lines)) AND i.status <> 'draft') THEN
        RAISE EXCEPTION 'the lines of an issued invoice cannot change' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER invoice_lines_insert_on_drafts AFTER INSERT ON invoice_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION invoice_lines_insert_only_on_drafts();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_only_on_drafts();

-- Per-customer ledger accounts are found by owner; the unique key's COALESCE expression
-- cannot serve "account_id = x" lookups.
CREATE INDEX ledger_accounts_owner_idx ON ledger_accounts (account_id, code, currency) WHERE account_id IS NOT NULL;
CREATE INDEX ledger_accounts_shared_idx ON ledger_accounts (code, currency) WHERE account_id IS NULL;

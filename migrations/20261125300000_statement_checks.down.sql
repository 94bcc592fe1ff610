DROP INDEX IF EXISTS ledger_accounts_owner_idx, ledger_accounts_shared_idx;
DROP TRIGGER IF EXISTS invoice_lines_immutable ON invoice_lines;
DROP TRIGGER IF EXISTS invoice_lines_insert_on_drafts ON invoice_lines;
DROP FUNCTION IF EXISTS invoice_lines_insert_only_on_drafts();
CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_only_on_drafts();
DROP TRIGGER IF EXISTS ledger_entries_balance ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_statement_balances();
CREATE CONSTRAINT TRIGGER ledger_entries_balance AFTER INSERT OR UPDATE ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

-- Issue 14: the PDF of an issued invoice or credit note, rendered once (headless Chromium, see
-- panel/src/billing/pdf.rs) and kept: every later download is these very bytes.
CREATE TABLE invoice_pdfs (
    invoice_id uuid PRIMARY KEY REFERENCES invoices (id),
    pdf        bytea NOT NULL,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoice_pdfs_is_pdf CHECK (substring(pdf FROM 1 FOR 5) = '\x255044462d'::bytea),
    CONSTRAINT invoice_pdfs_sha256 CHECK (sha256 = encode(sha256(pdf), 'hex'))
);

-- Archived means never rewritten.
CREATE FUNCTION invoice_pdfs_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an archived invoice PDF is never changed or removed' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER invoice_pdfs_immutable BEFORE UPDATE OR DELETE ON invoice_pdfs
    FOR EACH ROW EXECUTE FUNCTION invoice_pdfs_immutable();

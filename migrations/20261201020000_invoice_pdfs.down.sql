DROP TRIGGER invoice_pdfs_immutable ON invoice_pdfs;
DROP FUNCTION invoice_pdfs_immutable();
DROP TABLE invoice_pdfs;

DROP INDEX invoices_overdue_idx;
DROP TABLE billing_settings;

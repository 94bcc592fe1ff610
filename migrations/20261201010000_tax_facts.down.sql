DROP TRIGGER invoices_tax_facts ON invoices;
DROP FUNCTION invoices_tax_facts();
ALTER TABLE invoices DROP COLUMN seller_legal_name, DROP COLUMN seller_address, DROP COLUMN seller_vat_id, DROP COLUMN buyer_name,
    DROP COLUMN buyer_email, DROP COLUMN buyer_address, DROP COLUMN buyer_country, DROP COLUMN buyer_vat_id, DROP COLUMN buyer_vat_id_check,
    DROP COLUMN tax_treatment, DROP COLUMN tax_note;
DROP FUNCTION tax_rate_for(uuid, date);
DROP FUNCTION tax_treatment(uuid);
ALTER TABLE billing_settings DROP COLUMN seller_legal_name, DROP COLUMN seller_address, DROP COLUMN seller_country, DROP COLUMN seller_vat_id;
ALTER TABLE accounts DROP CONSTRAINT accounts_country_fk, DROP COLUMN address, DROP COLUMN vat_id, DROP COLUMN vat_id_checked_at;
UPDATE accounts SET country = country_as_entered WHERE country_as_entered IS NOT NULL;
ALTER TABLE accounts DROP COLUMN country_as_entered;
ALTER TABLE tax_rates DROP CONSTRAINT tax_rates_country_fk;
DELETE FROM tax_rates WHERE country IN ('BG','HR','CY','CZ','DK','EE','GR','HU','LV','LT','LU','MT','PT','RO','SK','SI');
DROP TABLE eu_vat_countries;
DROP TABLE iso_countries;

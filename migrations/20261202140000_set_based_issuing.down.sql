CREATE OR REPLACE FUNCTION invoice_lines_insert_only_on_drafts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoices i WHERE i.id = ANY (ARRAY(SELECT invoice_id FROM new_lines)) AND i.status <> 'draft') THEN
        RAISE EXCEPTION 'the lines of an issued invoice cannot change' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tax_treatment(p_account uuid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN a.country IS NULL THEN 'unknown'
        WHEN s.seller_country IS NULL OR NOT EXISTS (SELECT 1 FROM eu_vat_countries e WHERE e.country = s.seller_country) THEN 'domestic'
        WHEN NOT EXISTS (SELECT 1 FROM eu_vat_countries e WHERE e.country = a.country) THEN 'export'
        WHEN a.country = s.seller_country THEN 'domestic'
        WHEN a.vat_id IS NOT NULL THEN 'reverse_charge'
        ELSE 'eu_consumer' END
      FROM accounts a CROSS JOIN billing_settings s WHERE a.id = p_account
$$;

CREATE OR REPLACE FUNCTION tax_rate_for(p_account uuid, p_on date) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN tax_treatment(p_account) IN ('export', 'reverse_charge') THEN 0 ELSE
           COALESCE((SELECT t.rate_bp FROM tax_rates t
                      WHERE t.country = COALESCE(a.country, (SELECT seller_country FROM billing_settings))
                        AND t.valid_from <= p_on ORDER BY t.valid_from DESC LIMIT 1), 0) END
      FROM accounts a WHERE a.id = p_account
$$;

DROP FUNCTION tax_facts_of(uuid, date);

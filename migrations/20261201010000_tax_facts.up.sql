-- Issue 14: tax from facts, not from a text box.
--
-- * The country is one of ISO 3166-1 (`iso_countries`, generated from Debian's iso-codes 4.15.0,
--   /usr/share/iso-codes/json/iso_3166-1.json: 249 codes); accounts reference it.
--   Values stored before that were not codes (e.g. 'XX', 'UK') are kept as entered in
--   `country_as_entered`; 'UK' and 'EL' become GB and GR, the rest become NULL: such a
--   customer picks a country before ordering again, and until then pays the seller's rate.
-- * EU VAT (`eu_vat_countries`, with the VAT number prefix): the seller's country and VAT ID
--   come from configuration (`billing_settings`, written at start like the payment terms).
--   `tax_treatment(account)` is the one decision, `tax_rate_for(account, date)` its rate:
--     no country known          -> 'unknown': the seller's rate (never less VAT than owed)
--     seller outside the EU     -> 'domestic': the buyer country's rate from tax_rates
--     buyer outside the EU      -> 'export': 0 %
--     same country as the seller -> 'domestic': its rate
--     other EU country, business with a format-checked VAT ID -> 'reverse_charge': 0 %
--     other EU country, consumer -> 'eu_consumer': the buyer country's rate (OSS)
-- * Every invoice and credit note keeps, from the moment it is written, the seller's legal
--   name, address and VAT ID, the buyer's name, address, country, VAT ID and its check, and
--   the treatment with its note (a trigger fills them; a credit note copies its invoice's).

CREATE TABLE iso_countries (
    code text PRIMARY KEY,
    name text NOT NULL,
    CONSTRAINT iso_countries_code CHECK (code ~ '^[A-Z]{2}$')
);
INSERT INTO iso_countries (code, name) VALUES
    ('AD', 'Andorra'),
    ('AE', 'United Arab Emirates'),
    ('AF', 'Afghanistan'),
    ('AG', 'Antigua and Barbuda'),
    ('AI', 'Anguilla'),
    ('AL', 'Albania'),
    ('AM', 'Armenia'),
    ('AO', 'Angola'),
    ('AQ', 'Antarctica'),
    ('AR', 'Argentina'),
    ('AS', 'American Samoa'),
    ('AT', 'Austria'),
    ('AU', 'Australia'),
    ('AW', 'Aruba'),
    ('AX', 'Åland Islands'),
    ('AZ', 'Azerbaijan'),
    ('BA', 'Bosnia and Herzegovina'),
    ('BB', 'Barbados'),
    ('BD', 'Bangladesh'),
    ('BE', 'Belgium'),
    ('BF', 'Burkina Faso'),
    ('BG', 'Bulgaria'),
    ('BH', 'Bahrain'),
    ('BI', 'Burundi'),
    ('BJ', 'Benin'),
    ('BL', 'Saint Barthélemy'),
    ('BM', 'Bermuda'),
    ('BN', 'Brunei Darussalam'),
    ('BO', 'Bolivia'),
    ('BQ', 'Bonaire, Sint Eustatius and Saba'),
    ('BR', 'Brazil'),
    ('BS', 'Bahamas'),
    ('BT', 'Bhutan'),
    ('BV', 'Bouvet Island'),
    ('BW', 'Botswana'),
    ('BY', 'Belarus'),
    ('BZ', 'Belize'),
    ('CA', 'Canada'),
    ('CC', 'Cocos (Keeling) Islands'),
    ('CD', 'Congo, The Democratic Republic of the'),
    ('CF', 'Central African Republic'),
    ('CG', 'Congo'),
    ('CH', 'Switzerland'),
    ('CI', 'Côte d''Ivoire'),
    ('CK', 'Cook Islands'),
    ('CL', 'Chile'),
    ('CM', 'Cameroon'),
    ('CN', 'China'),
    ('CO', 'Colombia'),
    ('CR', 'Costa Rica'),
    ('CU', 'Cuba'),
    ('CV', 'Cabo Verde'),
    ('CW', 'Curaçao'),
    ('CX', 'Christmas Island'),
    ('CY', 'Cyprus'),
    ('CZ', 'Czechia'),
    ('DE', 'Germany'),
    ('DJ', 'Djibouti'),
    ('DK', 'Denmark'),
    ('DM', 'Dominica'),
    ('DO', 'Dominican Republic'),
    ('DZ', 'Algeria'),
    ('EC', 'Ecuador'),
    ('EE', 'Estonia'),
    ('EG', 'Egypt'),
    ('EH', 'Western Sahara'),
    ('ER', 'Eritrea'),
    ('ES', 'Spain'),
    ('ET', 'Ethiopia'),
    ('FI', 'Finland'),
    ('FJ', 'Fiji'),
    ('FK', 'Falkland Islands (Malvinas)'),
    ('FM', 'Micronesia, Federated States of'),
    ('FO', 'Faroe Islands'),
    ('FR', 'France'),
    ('GA', 'Gabon'),
    ('GB', 'United Kingdom'),
    ('GD', 'Grenada'),
    ('GE', 'Georgia'),
    ('GF', 'French Guiana'),
    ('GG', 'Guernsey'),
    ('GH', 'Ghana'),
    ('GI', 'Gibraltar'),
    ('GL', 'Greenland'),
    ('GM', 'Gambia'),
    ('GN', 'Guinea'),
    ('GP', 'Guadeloupe'),
    ('GQ', 'Equatorial Guinea'),
    ('GR', 'Greece'),
    ('GS', 'South Georgia and the South Sandwich Islands'),
    ('GT', 'Guatemala'),
    ('GU', 'Guam'),
    ('GW', 'Guinea-Bissau'),
    ('GY', 'Guyana'),
    ('HK', 'Hong Kong'),
    ('HM', 'Heard Island and McDonald Islands'),
    ('HN', 'Honduras'),
    ('HR', 'Croatia'),
    ('HT', 'Haiti'),
    ('HU', 'Hungary'),
    ('ID', 'Indonesia'),
    ('IE', 'Ireland'),
    ('IL', 'Israel'),
    ('IM', 'Isle of Man'),
    ('IN', 'India'),
    ('IO', 'British Indian Ocean Territory'),
    ('IQ', 'Iraq'),
    ('IR', 'Iran'),
    ('IS', 'Iceland'),
    ('IT', 'Italy'),
    ('JE', 'Jersey'),
    ('JM', 'Jamaica'),
    ('JO', 'Jordan'),
    ('JP', 'Japan'),
    ('KE', 'Kenya'),
    ('KG', 'Kyrgyzstan'),
    ('KH', 'Cambodia'),
    ('KI', 'Kiribati'),
    ('KM', 'Comoros'),
    ('KN', 'Saint Kitts and Nevis'),
    ('KP', 'North Korea'),
    ('KR', 'South Korea'),
    ('KW', 'Kuwait'),
    ('KY', 'Cayman Islands'),
    ('KZ', 'Kazakhstan'),
    ('LA', 'Laos'),
    ('LB', 'Lebanon'),
    ('LC', 'Saint Lucia'),
    ('LI', 'Liechtenstein'),
    ('LK', 'Sri Lanka'),
    ('LR', 'Liberia'),
    ('LS', 'Lesotho'),
    ('LT', 'Lithuania'),
    ('LU', 'Luxembourg'),
    ('LV', 'Latvia'),
    ('LY', 'Libya'),
    ('MA', 'Morocco'),
    ('MC', 'Monaco'),
    ('MD', 'Moldova'),
    ('ME', 'Montenegro'),
    ('MF', 'Saint Martin (French part)'),
    ('MG', 'Madagascar'),
    ('MH', 'Marshall Islands'),
    ('MK', 'North Macedonia'),
    ('ML', 'Mali'),
    ('MM', 'Myanmar'),
    ('MN', 'Mongolia'),
    ('MO', 'Macao'),
    ('MP', 'Northern Mariana Islands'),
    ('MQ', 'Martinique'),
    ('MR', 'Mauritania'),
    ('MS', 'Montserrat'),
    ('MT', 'Malta'),
    ('MU', 'Mauritius'),
    ('MV', 'Maldives'),
    ('MW', 'Malawi'),
    ('MX', 'Mexico'),
    ('MY', 'Malaysia'),
    ('MZ', 'Mozambique'),
    ('NA', 'Namibia'),
    ('NC', 'New Caledonia'),
    ('NE', 'Niger'),
    ('NF', 'Norfolk Island'),
    ('NG', 'Nigeria'),
    ('NI', 'Nicaragua'),
    ('NL', 'Netherlands'),
    ('NO', 'Norway'),
    ('NP', 'Nepal'),
    ('NR', 'Nauru'),
    ('NU', 'Niue'),
    ('NZ', 'New Zealand'),
    ('OM', 'Oman'),
    ('PA', 'Panama'),
    ('PE', 'Peru'),
    ('PF', 'French Polynesia'),
    ('PG', 'Papua New Guinea'),
    ('PH', 'Philippines'),
    ('PK', 'Pakistan'),
    ('PL', 'Poland'),
    ('PM', 'Saint Pierre and Miquelon'),
    ('PN', 'Pitcairn'),
    ('PR', 'Puerto Rico'),
    ('PS', 'Palestine, State of'),
    ('PT', 'Portugal'),
    ('PW', 'Palau'),
    ('PY', 'Paraguay'),
    ('QA', 'Qatar'),
    ('RE', 'Réunion'),
    ('RO', 'Romania'),
    ('RS', 'Serbia'),
    ('RU', 'Russian Federation'),
    ('RW', 'Rwanda'),
    ('SA', 'Saudi Arabia'),
    ('SB', 'Solomon Islands'),
    ('SC', 'Seychelles'),
    ('SD', 'Sudan'),
    ('SE', 'Sweden'),
    ('SG', 'Singapore'),
    ('SH', 'Saint Helena, Ascension and Tristan da Cunha'),
    ('SI', 'Slovenia'),
    ('SJ', 'Svalbard and Jan Mayen'),
    ('SK', 'Slovakia'),
    ('SL', 'Sierra Leone'),
    ('SM', 'San Marino'),
    ('SN', 'Senegal'),
    ('SO', 'Somalia'),
    ('SR', 'Suriname'),
    ('SS', 'South Sudan'),
    ('ST', 'Sao Tome and Principe'),
    ('SV', 'El Salvador'),
    ('SX', 'Sint Maarten (Dutch part)'),
    ('SY', 'Syria'),
    ('SZ', 'Eswatini'),
    ('TC', 'Turks and Caicos Islands'),
    ('TD', 'Chad'),
    ('TF', 'French Southern Territories'),
    ('TG', 'Togo'),
    ('TH', 'Thailand'),
    ('TJ', 'Tajikistan'),
    ('TK', 'Tokelau'),
    ('TL', 'Timor-Leste'),
    ('TM', 'Turkmenistan'),
    ('TN', 'Tunisia'),
    ('TO', 'Tonga'),
    ('TR', 'Türkiye'),
    ('TT', 'Trinidad and Tobago'),
    ('TV', 'Tuvalu'),
    ('TW', 'Taiwan'),
    ('TZ', 'Tanzania'),
    ('UA', 'Ukraine'),
    ('UG', 'Uganda'),
    ('UM', 'United States Minor Outlying Islands'),
    ('US', 'United States'),
    ('UY', 'Uruguay'),
    ('UZ', 'Uzbekistan'),
    ('VA', 'Holy See (Vatican City State)'),
    ('VC', 'Saint Vincent and the Grenadines'),
    ('VE', 'Venezuela'),
    ('VG', 'Virgin Islands, British'),
    ('VI', 'Virgin Islands, U.S.'),
    ('VN', 'Vietnam'),
    ('VU', 'Vanuatu'),
    ('WF', 'Wallis and Futuna'),
    ('WS', 'Samoa'),
    ('YE', 'Yemen'),
    ('YT', 'Mayotte'),
    ('ZA', 'South Africa'),
    ('ZM', 'Zambia'),
    ('ZW', 'Zimbabwe');

CREATE TABLE eu_vat_countries (
    country    text PRIMARY KEY REFERENCES iso_countries (code),
    vat_prefix text NOT NULL UNIQUE
);
INSERT INTO eu_vat_countries (country, vat_prefix) VALUES ('AT', 'AT'), ('BE', 'BE'), ('BG', 'BG'), ('HR', 'HR'), ('CY', 'CY'), ('CZ', 'CZ'), ('DK', 'DK'), ('EE', 'EE'), ('FI', 'FI'), ('FR', 'FR'), ('DE', 'DE'), ('GR', 'EL'), ('HU', 'HU'), ('IE', 'IE'), ('IT', 'IT'), ('LV', 'LV'), ('LT', 'LT'), ('LU', 'LU'), ('MT', 'MT'), ('NL', 'NL'), ('PL', 'PL'), ('PT', 'PT'), ('RO', 'RO'), ('SK', 'SK'), ('SI', 'SI'), ('ES', 'ES'), ('SE', 'SE');

-- Standard rates of the member states the first table did not have.
INSERT INTO tax_rates (country, valid_from, rate_bp) VALUES
    ('BG', '2007-01-01', 2000), ('HR', '2013-07-01', 2500), ('CY', '2014-01-13', 1900),
    ('CZ', '2013-01-01', 2100), ('DK', '1992-01-01', 2500), ('EE', '2024-01-01', 2200),
    ('EE', '2025-07-01', 2400), ('GR', '2016-06-01', 2400), ('HU', '2012-01-01', 2700),
    ('LV', '2011-07-01', 2100), ('LT', '2009-09-01', 2100), ('LU', '2024-01-01', 1700),
    ('MT', '1995-01-01', 1800), ('PT', '2011-01-01', 2300), ('RO', '2017-01-01', 1900),
    ('RO', '2025-08-01', 2100), ('SK', '2011-01-01', 2000), ('SK', '2025-01-01', 2300),
    ('SI', '2013-07-01', 2200)
ON CONFLICT DO NOTHING;
ALTER TABLE tax_rates ADD CONSTRAINT tax_rates_country_fk FOREIGN KEY (country) REFERENCES iso_countries (code);

-- Accounts: the country is a code of the list; a VAT ID is stored normalised (prefix and
-- number, no spaces) with when its format was checked; the postal address for invoices.
ALTER TABLE accounts ADD COLUMN country_as_entered text;
UPDATE accounts SET country_as_entered = country,
                    country = CASE country WHEN 'UK' THEN 'GB' WHEN 'EL' THEN 'GR' END
 WHERE country IS NOT NULL AND country NOT IN (SELECT code FROM iso_countries);
ALTER TABLE accounts
    ADD CONSTRAINT accounts_country_fk FOREIGN KEY (country) REFERENCES iso_countries (code),
    ADD COLUMN address text NOT NULL DEFAULT '',
    ADD COLUMN vat_id text,
    ADD COLUMN vat_id_checked_at timestamptz,
    ADD CONSTRAINT accounts_vat_id_normalised CHECK (vat_id IS NULL OR vat_id ~ '^[A-Z]{2}[0-9A-Z+*]{2,13}$'),
    ADD CONSTRAINT accounts_vat_id_checked CHECK ((vat_id IS NULL) = (vat_id_checked_at IS NULL)),
    ADD CONSTRAINT accounts_address_length CHECK (length(address) <= 500);

-- The seller, from configuration ([billing.seller]).
ALTER TABLE billing_settings
    ADD COLUMN seller_legal_name text NOT NULL DEFAULT '',
    ADD COLUMN seller_address text NOT NULL DEFAULT '',
    ADD COLUMN seller_country text REFERENCES iso_countries (code),
    ADD COLUMN seller_vat_id text NOT NULL DEFAULT '';

CREATE FUNCTION tax_treatment(p_account uuid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN a.country IS NULL THEN 'unknown'
        WHEN s.seller_country IS NULL OR NOT EXISTS (SELECT 1 FROM eu_vat_countries e WHERE e.country = s.seller_country) THEN 'domestic'
        WHEN NOT EXISTS (SELECT 1 FROM eu_vat_countries e WHERE e.country = a.country) THEN 'export'
        WHEN a.country = s.seller_country THEN 'domestic'
        WHEN a.vat_id IS NOT NULL THEN 'reverse_charge'
        ELSE 'eu_consumer' END
      FROM accounts a CROSS JOIN billing_settings s WHERE a.id = p_account
$$;

CREATE FUNCTION tax_rate_for(p_account uuid, p_on date) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN tax_treatment(p_account) IN ('export', 'reverse_charge') THEN 0 ELSE
           COALESCE((SELECT t.rate_bp FROM tax_rates t
                      WHERE t.country = COALESCE(a.country, (SELECT seller_country FROM billing_settings))
                        AND t.valid_from <= p_on ORDER BY t.valid_from DESC LIMIT 1), 0) END
      FROM accounts a WHERE a.id = p_account
$$;

ALTER TABLE invoices
    ADD COLUMN seller_legal_name text,
    ADD COLUMN seller_address text,
    ADD COLUMN seller_vat_id text,
    ADD COLUMN buyer_name text,
    ADD COLUMN buyer_email text,
    ADD COLUMN buyer_address text,
    ADD COLUMN buyer_country text,
    ADD COLUMN buyer_vat_id text,
    ADD COLUMN buyer_vat_id_check text,
    ADD COLUMN tax_treatment text,
    ADD COLUMN tax_note text;

CREATE FUNCTION invoices_tax_facts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.corrects_invoice_id IS NOT NULL THEN
        SELECT i.seller_legal_name, i.seller_address, i.seller_vat_id, i.buyer_name, i.buyer_email, i.buyer_address,
               i.buyer_country, i.buyer_vat_id, i.buyer_vat_id_check, i.tax_treatment, i.tax_note
          INTO NEW.seller_legal_name, NEW.seller_address, NEW.seller_vat_id, NEW.buyer_name, NEW.buyer_email, NEW.buyer_address,
               NEW.buyer_country, NEW.buyer_vat_id, NEW.buyer_vat_id_check, NEW.tax_treatment, NEW.tax_note
          FROM invoices i WHERE i.id = NEW.corrects_invoice_id;
        RETURN NEW;
    END IF;
    SELECT s.seller_legal_name, s.seller_address, s.seller_vat_id INTO NEW.seller_legal_name, NEW.seller_address, NEW.seller_vat_id
      FROM billing_settings s;
    NEW.tax_treatment := tax_treatment(NEW.account_id);
    SELECT a.display_name, a.email, a.address, a.country,
           CASE WHEN NEW.tax_treatment = 'reverse_charge' THEN a.vat_id END,
           CASE WHEN NEW.tax_treatment = 'reverse_charge' THEN 'format valid for ' || a.country || ', checked ' || to_char(a.vat_id_checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') END
      INTO NEW.buyer_name, NEW.buyer_email, NEW.buyer_address, NEW.buyer_country, NEW.buyer_vat_id, NEW.buyer_vat_id_check
      FROM accounts a WHERE a.id = NEW.account_id;
    NEW.tax_note := CASE NEW.tax_treatment
        WHEN 'reverse_charge' THEN 'Reverse charge: VAT to be accounted for by the recipient (Article 196, Council Directive 2006/112/EC).'
        WHEN 'export' THEN 'Not subject to EU VAT: services supplied to a customer outside the EU (0 %).'
        WHEN 'unknown' THEN 'VAT at the seller''s rate: the customer''s country is not known.'
        END;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_tax_facts BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION invoices_tax_facts();

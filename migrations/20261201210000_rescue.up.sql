-- A VPS in rescue boots its kind's rescue system with its own disk attached (issue 13).
ALTER TABLE instances ADD COLUMN rescue boolean NOT NULL DEFAULT false;

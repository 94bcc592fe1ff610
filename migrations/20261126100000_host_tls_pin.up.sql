-- The SHA-256 (hex) of the host's TLS certificate, sent by its provisioner at join: the
-- panel accepts only that certificate from it (no CA needed). NULL: a host without TLS, or
-- one whose certificate a CA configured in the panel vouches for.
ALTER TABLE hosts ADD COLUMN tls_cert_sha256 text
    CONSTRAINT hosts_tls_cert_sha256_format CHECK (tls_cert_sha256 ~ '^[0-9a-f]{64}$');

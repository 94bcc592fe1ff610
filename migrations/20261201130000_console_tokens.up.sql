-- Browser consoles (issue 13). A console is opened with a one-time token, minted by the server
-- page (bound to the customer's login: the WebSocket also checks the session) or by the API
-- (`POST /api/v1/servers/{id}/console`, for a reseller to hand to its customer). Only the
-- token's sha256 is kept; it opens one connection (`used_at`, set atomically) before
-- `expires_at`. Every session is in the audit log (console.open / console.close).
CREATE TABLE console_tokens (
    token_sha256 text PRIMARY KEY,
    instance_id uuid NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    -- who asked: the customer (web), or the API key's account (api)
    account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    via text NOT NULL CHECK (via IN ('web', 'api')),
    api_key_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    CONSTRAINT console_tokens_life CHECK (expires_at > created_at),
    CONSTRAINT console_tokens_api_key CHECK ((via = 'api') = (api_key_id IS NOT NULL))
);
CREATE INDEX console_tokens_expires ON console_tokens (expires_at);

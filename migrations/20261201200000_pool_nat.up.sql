-- A pool is either a block routed to its host (the host forwards its addresses as they are)
-- or private (nat: the host masquerades its addresses' traffic to the outside).
ALTER TABLE ip_pools ADD COLUMN nat boolean NOT NULL DEFAULT false;

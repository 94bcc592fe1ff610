-- When an instance first found no host with room (issue 14): an order still waiting after the
-- configured time is refunded. Set by the scheduler with the panel's clock, cleared on placement.
ALTER TABLE instances ADD COLUMN waiting_since timestamptz;

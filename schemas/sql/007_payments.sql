-- 007_payments.sql — what the gateway records about payments (gateway/README.md, "Payments").
--
-- The gateway writes a payments row when the provider has created the payment and before the
-- booking turns pending_payment, then updates it as the provider's webhooks arrive.  The grid
-- stays the source of truth for the booking and its seats; this table is the money's side:
-- which payment paid which booking, which were declined, and which confirmations came too late
-- and are owed (refund_status 'due') or were given back ('refunded').
--
-- The foreign key of 002 from payments.booking_id to bookings goes: the bookings table is
-- written behind by the persister, so a booking created a moment ago may not be there yet when
-- its buyer starts paying, and a payment must never wait for the drain.  The booking id itself
-- names its partition (002), so a payment whose booking row is missing still says where the
-- booking lives.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

ALTER TABLE payments DROP CONSTRAINT payments_booking_id_fkey;

ALTER TABLE payments
    ADD COLUMN user_id         bigint NOT NULL DEFAULT 0,   -- who started it (0: unknown)
    ADD COLUMN payment_url     text,                        -- the provider's page for the buyer
    ADD COLUMN provider_status text,                        -- as the last webhook said it
    ADD COLUMN webhooks        integer NOT NULL DEFAULT 0,  -- signed webhooks received
    ADD COLUMN refunded_at     timestamptz,
    ADD CONSTRAINT payments_url_length CHECK (length(payment_url) <= 2048),
    ADD CONSTRAINT payments_provider_status_length CHECK (length(provider_status) <= 32),
    ADD CONSTRAINT payments_webhooks_nonnegative CHECK (webhooks >= 0);

-- payment-status reads a booking's latest payment.
CREATE INDEX payments_booking_created_idx ON payments (booking_id, created_at DESC);

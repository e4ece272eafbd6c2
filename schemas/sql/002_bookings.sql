-- 002_bookings.sql — bookings, the history of the seats they held, payments, and each
-- partition's persisted position in its change log.
--
-- These tables are written by the write-behind persister from the grid's change logs (and
-- payments by the gateway).  The grid is the source of truth: a change it acknowledged must
-- always be storable, or the persister would stop and the grid's rings would fill.  So the
-- constraints here catch corruption (impossible states, ids from the wrong partition, a seat
-- held twice) but never ask for something the grid does not guarantee — bookings.user_id,
-- for instance, has no foreign key to users (load tests and system operations use ids that
-- have no account).  Never edit this file once applied: add a new numbered migration.

-- ---- Bookings --------------------------------------------------------------------------------

-- id = partition_id << 32 | seq (include/tixgrid/seat.h), so a booking names its partition.
CREATE TABLE bookings (
    id           bigint PRIMARY KEY,
    partition_id integer NOT NULL,
    event_id     bigint NOT NULL,
    user_id      bigint NOT NULL,       -- 0: the system
    status       text NOT NULL,
    created_at   timestamptz NOT NULL,
    deadline     timestamptz,           -- hold deadline, or payment deadline once pending
    version      bigint NOT NULL DEFAULT 0, -- +1 on every status change in the grid
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Deferred: a batch may write a booking before its partition row in one transaction.
    FOREIGN KEY (partition_id, event_id) REFERENCES grid_partitions (partition_id, event_id)
        DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT bookings_id_in_partition CHECK ((id >> 32) = partition_id
                                               AND (id & 4294967295) <> 0),
    CONSTRAINT bookings_user_range CHECK (user_id >= 0),
    CONSTRAINT bookings_status_valid CHECK (status IN ('created', 'pending_payment', 'paid',
                                                       'cancelled', 'expired', 'failed')),
    CONSTRAINT bookings_version_range CHECK (version >= 0 AND version <= 4294967295)
);
CREATE INDEX bookings_user_idx ON bookings (user_id, created_at DESC);
CREATE INDEX bookings_event_idx ON bookings (event_id);
-- Replay reloads a partition's live bookings (with their deadlines) from here.
CREATE INDEX bookings_live_idx ON bookings (partition_id)
    WHERE status IN ('created', 'pending_payment');

-- A held or sold seat's booking must exist (checked at commit: a batch writes the booking
-- record before or after its seats in any order).
ALTER TABLE seats ADD CONSTRAINT seats_booking_exists
    FOREIGN KEY (booking_id) REFERENCES bookings (id) DEFERRABLE INITIALLY DEFERRED;

-- Which seats a booking held, and when it let them go.  A row opens when a seat is taken by
-- the booking and closes (released_at) when the seat goes back to FREE; the seats of a paid
-- booking stay open for good.  At most one open row per seat: no seat is ever held or sold
-- by two bookings at once (invariant 1 of DESIGN.md, checked by PostgreSQL too).
CREATE TABLE booking_seats (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id  bigint NOT NULL REFERENCES bookings (id) ON DELETE CASCADE
                    DEFERRABLE INITIALLY DEFERRED,
    event_id    bigint NOT NULL,
    seat_no     integer NOT NULL,
    held_at     timestamptz NOT NULL,
    released_at timestamptz,
    FOREIGN KEY (event_id, seat_no) REFERENCES seats (event_id, seat_no) ON DELETE CASCADE,
    CONSTRAINT booking_seats_release_after_hold CHECK (released_at IS NULL
                                                       OR released_at >= held_at)
);
CREATE INDEX booking_seats_booking_idx ON booking_seats (booking_id);
CREATE UNIQUE INDEX booking_seats_one_open_hold ON booking_seats (event_id, seat_no)
    WHERE released_at IS NULL;

-- ---- Payments --------------------------------------------------------------------------------

CREATE TABLE payments (
    id            text PRIMARY KEY,         -- the payment id the gateway hands the provider
    booking_id    bigint NOT NULL REFERENCES bookings (id) DEFERRABLE INITIALLY DEFERRED,
    provider      text NOT NULL,
    amount_minor  bigint NOT NULL,
    currency      char(3) NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    -- A confirmation that arrives after the booking expired is recorded as completed and
    -- flagged 'due' for a refund; it never becomes a sale (API.md, "Payments").
    refund_status text NOT NULL DEFAULT 'none',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_id_length CHECK (length(id) BETWEEN 1 AND 128),
    CONSTRAINT payments_provider_length CHECK (length(provider) BETWEEN 1 AND 100),
    CONSTRAINT payments_amount_nonnegative CHECK (amount_minor >= 0),
    CONSTRAINT payments_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_status_valid CHECK (status IN ('pending', 'completed', 'failed',
                                                       'expired')),
    CONSTRAINT payments_refund_valid CHECK (refund_status IN ('none', 'due', 'refunded',
                                                              'failed')),
    CONSTRAINT payments_refund_needs_money CHECK (refund_status = 'none' OR status = 'completed')
);
CREATE INDEX payments_booking_idx ON payments (booking_id);
-- A booking is paid by one payment; a second completed one can only be a refund case.
CREATE UNIQUE INDEX payments_one_per_paid_booking ON payments (booking_id)
    WHERE status = 'completed' AND refund_status = 'none';

-- ---- Persisted positions ---------------------------------------------------------------------

-- The last change-log sequence of each partition that is in PostgreSQL, and the map epoch it
-- was written under.  Updated in the same transaction as the changes themselves, so a batch
-- that is replayed changes nothing, and records of an older epoch are refused.
CREATE TABLE partition_offsets (
    partition_id integer PRIMARY KEY REFERENCES grid_partitions (partition_id) ON DELETE CASCADE,
    epoch        bigint NOT NULL,
    last_seq     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT partition_offsets_epoch_range CHECK (epoch >= 0 AND epoch < 9007199254740992),
    CONSTRAINT partition_offsets_seq_range CHECK (last_seq >= 0 AND last_seq < 9007199254740992)
);

-- 003_audit_outbox.sql — the audit log (range-partitioned by month) and the notification
-- outbox, both written by the persister; and the partition upkeep `migrate` runs each time.
--
-- The audit log is kept at least a year.  Monthly partitions make that cheap: old months are
-- dropped whole (`DROP TABLE audit_log_y2025m01`, or DETACH first to archive) instead of
-- deleted row by row, and a query for one month reads one partition.  Neither table has
-- foreign keys: a record of what happened must never be refused because the user or the
-- booking it names was deleted since.  Never edit this file once applied.

-- ---- Audit log -------------------------------------------------------------------------------

CREATE SEQUENCE audit_log_id_seq AS bigint;

CREATE TABLE audit_log (
    id         bigint NOT NULL DEFAULT nextval('audit_log_id_seq'),
    logged_at  timestamptz NOT NULL DEFAULT now(),
    client_ip  inet,             -- NULL for the system (sweeper, payments provider)
    user_id    bigint,
    booking_id bigint,
    event_id   bigint,
    action     text NOT NULL,    -- the operation: 'seats_hold', 'payment_begin', ...
    seats      integer[] NOT NULL DEFAULT '{}', -- the seats the operation named
    outcome    text NOT NULL,    -- 'ok', or the error's tg_errname(): 'seat_taken', ...
    detail     jsonb,            -- anything else worth keeping, as an object
    PRIMARY KEY (id, logged_at),
    CONSTRAINT audit_log_action_format CHECK (action ~ '^[a-z][a-z0-9_]{0,39}$'),
    CONSTRAINT audit_log_outcome_format CHECK (outcome ~ '^[a-z][a-z0-9_]{0,39}$'),
    CONSTRAINT audit_log_seats_bound CHECK (cardinality(seats) <= 1000),
    CONSTRAINT audit_log_detail_object CHECK (detail IS NULL OR jsonb_typeof(detail) = 'object')
) PARTITION BY RANGE (logged_at);

ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;

CREATE INDEX audit_log_user_idx ON audit_log (user_id, logged_at);
CREATE INDEX audit_log_booking_idx ON audit_log (booking_id) WHERE booking_id IS NOT NULL;

CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

-- Creates the monthly partitions audit_log_y<year>m<month> for `months` months from the
-- month of first_month (UTC) that do not exist yet; returns how many it made.  As with
-- events, a month whose rows already sit in the default partition is skipped with a warning.
CREATE FUNCTION tixgrid_ensure_audit_months(first_month date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    made integer := 0;
    m date := date_trunc('month', first_month)::date;
    lo timestamptz;
    hi timestamptz;
    part text;
BEGIN
    IF months > 240 THEN
        RAISE EXCEPTION 'tixgrid_ensure_audit_months: at most 240 months at once';
    END IF;
    FOR i IN 0..months - 1 LOOP
        part := format('audit_log_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
        lo := make_timestamptz(extract(year FROM m)::integer, extract(month FROM m)::integer,
                               1, 0, 0, 0, 'UTC');
        hi := lo + interval '1 month';
        m := (m + interval '1 month')::date;
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM audit_log_default WHERE logged_at >= lo AND logged_at < hi) THEN
            RAISE WARNING 'audit records of % are in audit_log_default; partition % not created',
                to_char(lo, 'YYYY-MM'), part;
            CONTINUE;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;

-- The upkeep `tixgrid-persister migrate` runs after the migrations, every time: the audit
-- months from last month to two years ahead and the event years up to five years ahead.
-- Cheap and idempotent; run it at least monthly (for example from the persister).
CREATE FUNCTION tixgrid_maintain_partitions() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    this_year integer := extract(year FROM now() AT TIME ZONE 'UTC')::integer;
BEGIN
    RETURN tixgrid_ensure_audit_months(((now() AT TIME ZONE 'UTC') - interval '1 month')::date,
                                       26)
         + tixgrid_ensure_event_years(this_year, this_year + 5);
END
$$;

SELECT tixgrid_maintain_partitions();

-- ---- Notification outbox -----------------------------------------------------------------------

-- One row per message owed to a user (payment confirmed, booking expired, refund due, ...).
-- A sender takes unsent rows oldest first, sends, and sets sent_at; on failure it raises
-- attempts and keeps last_error.
CREATE TABLE notification_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL,
    booking_id bigint,
    kind       text NOT NULL,    -- 'payment_confirmed', 'booking_expired', 'refund_due', ...
    payload    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    CONSTRAINT notification_outbox_kind_format CHECK (kind ~ '^[a-z][a-z0-9_]{0,39}$'),
    CONSTRAINT notification_outbox_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT notification_outbox_attempts_range CHECK (attempts >= 0),
    CONSTRAINT notification_outbox_sent_after_created CHECK (sent_at IS NULL
                                                             OR sent_at >= created_at)
);
CREATE INDEX notification_outbox_unsent_idx ON notification_outbox (created_at)
    WHERE sent_at IS NULL;
CREATE INDEX notification_outbox_user_idx ON notification_outbox (user_id, created_at);

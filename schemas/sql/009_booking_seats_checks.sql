-- 009_booking_seats_checks.sql — booking_seats' references checked once per statement.
--
-- 002 gave booking_seats two foreign keys, to seats and to bookings.  PostgreSQL checks a foreign
-- key row by row: one query per row and key, each locking the row it finds (FOR KEY SHARE).  The
-- drain writes a row per hold (every hold the grid made, history without end), and those two
-- checks were most of what a row cost: 80,000 rows took 1,567 ms with them, 832 ms with the
-- key to seats alone, 714 ms with the key to bookings alone and 300 ms with neither, on the 2-core
-- machine of tests/bench/RESULTS.md.  Under load that put them among PostgreSQL's largest costs
-- per seat sold.
--
-- The same rules hold, checked by statement instead of by row: after an INSERT one query over
-- the statement's new rows refuses the whole statement if a row names a seat or a booking that
-- does not exist (SQLSTATE 23503, foreign_key_violation, as before); an UPDATE that changes what
-- a row names checks that row; a DELETE of seats or bookings takes their rows with it (ON DELETE
-- CASCADE, as before); their keys cannot change while a row names them.  80,000 rows: 557 ms.  The checks are immediate (at the end of the statement, no longer at COMMIT
-- for bookings): the drain writes a batch's bookings before its booking_seats rows.  Unlike a
-- foreign key they lock nothing: a seat or booking deleted by another transaction at the same
-- moment could leave a row behind.  Nothing deletes seats but the deletion of a draft event
-- (which never sold anything) and nothing deletes bookings.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

ALTER TABLE booking_seats
    DROP CONSTRAINT booking_seats_booking_id_fkey,
    DROP CONSTRAINT booking_seats_event_id_seat_no_fkey;

-- The rows one statement inserted (transition table new_rows) must name existing
-- seats and bookings.
CREATE FUNCTION tixgrid_booking_seats_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.event_id, n.seat_no INTO bad FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM seats s
                          WHERE s.event_id = n.event_id AND s.seat_no = n.seat_no)
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'booking_seats names seat % of event %, which does not exist',
            bad.seat_no, bad.event_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'booking_seats';
    END IF;
    SELECT n.booking_id INTO bad FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = n.booking_id)
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'booking_seats names booking %, which does not exist', bad.booking_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'booking_seats';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER booking_seats_refs_insert AFTER INSERT ON booking_seats
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tixgrid_booking_seats_refs();

-- An update that changes what a row names checks that row (the drain's updates only close
-- rows, setting released_at, and never run it).
CREATE FUNCTION tixgrid_booking_seats_ref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM seats s
                   WHERE s.event_id = NEW.event_id AND s.seat_no = NEW.seat_no) THEN
        RAISE EXCEPTION 'booking_seats names seat % of event %, which does not exist',
            NEW.seat_no, NEW.event_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'booking_seats';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = NEW.booking_id) THEN
        RAISE EXCEPTION 'booking_seats names booking %, which does not exist', NEW.booking_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'booking_seats';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER booking_seats_refs_update AFTER UPDATE OF booking_id, event_id, seat_no
    ON booking_seats FOR EACH ROW EXECUTE FUNCTION tixgrid_booking_seats_ref();

-- A seat or a booking deleted takes its booking_seats rows with it.
CREATE FUNCTION tixgrid_booking_seats_seats_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM booking_seats bs USING old_rows o
        WHERE bs.event_id = o.event_id AND bs.seat_no = o.seat_no;
    RETURN NULL;
END
$$;

CREATE FUNCTION tixgrid_booking_seats_bookings_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM booking_seats bs USING old_rows o WHERE bs.booking_id = o.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER seats_booking_seats_cascade AFTER DELETE ON seats
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tixgrid_booking_seats_seats_gone();
CREATE TRIGGER bookings_booking_seats_cascade AFTER DELETE ON bookings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tixgrid_booking_seats_bookings_gone();

-- A seat's or a booking's key may not change while booking_seats names it (NO ACTION, as
-- before).  Row triggers on the key columns only: the drain's updates of seats and bookings
-- never name them, so these never run on the write path.
CREATE FUNCTION tixgrid_booking_seats_keys_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'seats' THEN
        IF (OLD.event_id, OLD.seat_no) IS DISTINCT FROM (NEW.event_id, NEW.seat_no)
           AND EXISTS (SELECT 1 FROM booking_seats bs
                       WHERE bs.event_id = OLD.event_id AND bs.seat_no = OLD.seat_no) THEN
            RAISE EXCEPTION 'seat % of event % is named by booking_seats: its key cannot change',
                OLD.seat_no, OLD.event_id
                USING ERRCODE = 'foreign_key_violation', TABLE = 'seats';
        END IF;
    ELSIF OLD.id IS DISTINCT FROM NEW.id
          AND EXISTS (SELECT 1 FROM booking_seats bs WHERE bs.booking_id = OLD.id) THEN
        RAISE EXCEPTION 'booking % is named by booking_seats: its id cannot change', OLD.id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'bookings';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER seats_booking_seats_keys AFTER UPDATE OF event_id, seat_no ON seats
    FOR EACH ROW EXECUTE FUNCTION tixgrid_booking_seats_keys_kept();
CREATE TRIGGER bookings_booking_seats_keys AFTER UPDATE OF id ON bookings
    FOR EACH ROW EXECUTE FUNCTION tixgrid_booking_seats_keys_kept();

-- 010_map_notify.sql — a change to events or to the placement is announced to every gateway.
--
-- Gateways keep a copy of the partition map (which unit serves which partition, and whether
-- its event is on sale) and read it again every --map-refresh-ms.  The gateway that publishes,
-- cancels or reschedules an event reads it again before it answers; the others, until this
-- migration, only at their next read: for up to a second a shopper on another gateway could be
-- told that a published event is not on sale, or buy seats of an event just cancelled.
--
-- Each statement that changes events or grid_partitions now sends a notification on the
-- channel tixgrid_map, which PostgreSQL delivers when the transaction commits (never before,
-- and not at all if it rolls back); every gateway LISTENs on it and reads the map at once.
-- Notifications of one transaction are folded into one.  The payload is empty: a gateway reads
-- the whole map anyway.  A sale window opening or closing with the clock changes no row, and
-- is still seen at the next periodic read.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

CREATE FUNCTION tixgrid_notify_map() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tixgrid_map', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_map AFTER INSERT OR UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION tixgrid_notify_map();
CREATE TRIGGER grid_partitions_notify_map AFTER INSERT OR UPDATE OR DELETE ON grid_partitions
    FOR EACH STATEMENT EXECUTE FUNCTION tixgrid_notify_map();

-- 004_grid_members.sql — the address book of processing units, and the records the
-- write-behind drain refused.
--
-- grid_members is where a partition's primary_pu is looked up: the drain (`tixgrid-persister
-- run`) reads each placed partition's change log from its primary's REP address.  The grid
-- manager of a later issue will own this table (registration and heartbeats set last_seen);
-- until then operators fill it with `tixgrid-persister pu-register` and place partitions with
-- `tixgrid-persister place`.  A unit's name is the one it runs under (`tixgrid-pu --name`):
-- 1..47 bytes of [A-Za-z0-9._-] (TG_PU_NAME_BYTES), which is also what its segments in /dev/shm
-- are called after.
--
-- persister_rejects keeps every change-log record the drain could not apply (a seat beyond the
-- partition, a seat word with no valid state, a booking record without a status, a gap in the
-- sequence numbers, ...).  Such a record is skipped — one bad record must never stop the drain,
-- or the grid's rings would fill — and kept here with the reason, verbatim, for a post-mortem.
-- Like the audit log it has no foreign keys: a record of what happened must outlive what it
-- names.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

-- ---- Processing units --------------------------------------------------------------------

CREATE TABLE grid_members (
    pu_name       text PRIMARY KEY,
    rep_url       text,             -- nng REQ/REP address: requests, log_read, log_ack
    pub_url       text,             -- nng PUB address: seat_changes events; NULL if none
    zone          text,             -- failure domain (rack, availability zone); NULL: unknown
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz,      -- last registration or heartbeat
    CONSTRAINT grid_members_name_format CHECK (pu_name ~ '^[A-Za-z0-9._-]{1,47}$'),
    -- "ipc:///tmp/pu1.rep", "tcp://10.0.0.7:7101": a scheme and an address, as nng dials them.
    CONSTRAINT grid_members_rep_url_format CHECK (
        rep_url IS NULL OR (rep_url ~ '^[a-z][a-z0-9+]*://.' AND octet_length(rep_url) <= 255)),
    CONSTRAINT grid_members_pub_url_format CHECK (
        pub_url IS NULL OR (pub_url ~ '^[a-z][a-z0-9+]*://.' AND octet_length(pub_url) <= 255)),
    CONSTRAINT grid_members_zone_length CHECK (zone IS NULL OR octet_length(zone) BETWEEN 1 AND 63)
);

-- Units already named as primaries become members (without an address: the drain skips a
-- member it cannot dial until its address is registered).
INSERT INTO grid_members (pu_name)
SELECT DISTINCT primary_pu FROM grid_partitions WHERE primary_pu IS NOT NULL
ON CONFLICT DO NOTHING;

-- A partition's primary is a member.  Deferred, so that the manager may write a member and the
-- placements that name it in either order within one transaction; a member cannot be removed
-- while it is still a primary (move its partitions first); renaming one carries the new name
-- into the map.
ALTER TABLE grid_partitions ADD CONSTRAINT grid_partitions_primary_member
    FOREIGN KEY (primary_pu) REFERENCES grid_members (pu_name)
    ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX grid_partitions_primary_idx ON grid_partitions (primary_pu)
    WHERE primary_pu IS NOT NULL;

-- ---- Records the drain refused -------------------------------------------------------------

CREATE TABLE persister_rejects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_id integer NOT NULL,
    seq          bigint NOT NULL,   -- the record's change-log sequence number
    reason       text NOT NULL,     -- one line: "seat 1200 is beyond the partition's 1000 seats"
    -- The record as it arrived: {"seq", "kind", "ident", "status", "word", "deadline_ms",
    -- "created_ms", "version"} (wire.md, "Log record"); word as an exact unsigned number.
    record       jsonb NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT persister_rejects_partition_range CHECK (partition_id >= 0
                                                        AND partition_id < 2097152),
    CONSTRAINT persister_rejects_seq_range CHECK (seq >= 0 AND seq < 9007199254740992),
    CONSTRAINT persister_rejects_reason_length CHECK (length(reason) BETWEEN 1 AND 500),
    CONSTRAINT persister_rejects_record_object CHECK (jsonb_typeof(record) = 'object')
);
CREATE INDEX persister_rejects_partition_idx ON persister_rejects (partition_id, seq);

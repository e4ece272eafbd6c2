-- 006_grid_manager.sql — what the grid manager keeps in PostgreSQL besides the placements
-- (grid_partitions): the partition map's own epoch, and each unit's state and incarnation.
--
-- tixgrid-manager (grid/README.md) owns grid_partitions.primary_pu, backup_pus and epoch,
-- grid_members and grid_map.  One manager is active at a time: it holds a session-level
-- advisory lock, and it makes every change of the map in one transaction on that same session,
-- so that a manager that lost its session cannot write.  grid_map.epoch rises with every
-- change of the map — a placement or a unit's state — and each write checks the epoch it read
-- (`UPDATE ... WHERE epoch = $old`), so that two writers could never both succeed.
--
-- grid_members.state is the manager's verdict: 'alive' (heard within the failure timeout),
-- 'dead' (not heard for it: its partitions are unavailable until they get another primary),
-- 'leaving' (removed with `tixgridctl remove-pu` and told to exit).  NULL: a row written by
-- `tixgrid-persister pu-register` that no manager has judged yet.  last_seen is written by the
-- manager about once a second, not at every heartbeat.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

CREATE TABLE grid_map (
    id         boolean PRIMARY KEY DEFAULT true,
    epoch      bigint NOT NULL DEFAULT 0,  -- rises with every change of the map
    manager    text,                       -- the manager that wrote it last
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grid_map_one_row CHECK (id),
    CONSTRAINT grid_map_epoch_range CHECK (epoch >= 0 AND epoch < 9007199254740992),
    CONSTRAINT grid_map_manager_format CHECK (manager IS NULL OR manager ~ '^[A-Za-z0-9._-]{1,47}$')
);
INSERT INTO grid_map DEFAULT VALUES;

ALTER TABLE grid_members
    ADD COLUMN state text,
    ADD COLUMN incarnation bigint,  -- of the unit's current run (its start time in ms)
    ADD CONSTRAINT grid_members_state_valid CHECK (state IS NULL OR state IN ('alive', 'dead', 'leaving')),
    ADD CONSTRAINT grid_members_incarnation_range CHECK (
        incarnation IS NULL OR (incarnation > 0 AND incarnation < 9007199254740992));

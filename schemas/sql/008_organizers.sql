-- 008_organizers.sql — what organizers need: draft layouts, ownership of events, and the
-- organizer's own records (gateway/README.md, "Organizers").
--
-- A draft's layout lives as one JSON document in events.layout until the event is published:
-- `sections`, `seats` and `grid_partitions` need partition ids, and a draft has none yet (its
-- layout may still change wholesale).  Publishing writes those tables from it in one
-- transaction; the document then stays as it was published (the layout is frozen from then on).
-- organizer_id is the account that created the event (NULL: made by seed-demo or by hand;
-- only admins manage those).  published_at is set once, by the first publication.
--
-- Never edit this file once it has been applied anywhere: add a new numbered migration.

ALTER TABLE events
    ADD COLUMN layout       jsonb,
    ADD COLUMN organizer_id bigint,
    ADD COLUMN published_at timestamptz,
    ADD CONSTRAINT events_layout_object CHECK (layout IS NULL OR jsonb_typeof(layout) = 'object'),
    ADD CONSTRAINT events_organizer_range CHECK (organizer_id IS NULL OR organizer_id > 0);

CREATE INDEX events_organizer_idx ON events (organizer_id) WHERE organizer_id IS NOT NULL;

-- Replays of a run found by the run, not by folding every replay of the account. The run
-- details' Replays panel and `runlens runs show` looked a run's replays up in the `runs` view by
-- replay_of, which only its fold knows: every run of the account (the CLI) or every replay of it
-- (the panel) was folded to answer for one run. They now read the replays' run ids from
-- `events` (replay_of is on each of their events) and fold only those runs, by key.
-- A bloom filter per granule on replay_of keeps that read to the granules holding the run's
-- replays whatever the account's size; existing parts get it by a mutation (MATERIALIZE INDEX),
-- which rewrites no column. Idempotent: re-running after a crash adds and materializes nothing
-- more than once.
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS replay_of_index replay_of TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE {db}.events MATERIALIZE INDEX replay_of_index;

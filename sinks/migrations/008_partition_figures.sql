-- Per-partition figures in pipeline_metrics: each worker reports, every metrics interval, one
-- row per partition of the events topic it owns (metric 'partition_lag', value = records behind
-- the head). `runlens status` reads who owns what from here when the broker does not describe its
-- consumer groups' members (the embedded broker does not). Whole-worker rows keep partition -1.
ALTER TABLE {db}.pipeline_metrics ADD COLUMN IF NOT EXISTS partition Int32 DEFAULT -1 AFTER metric;

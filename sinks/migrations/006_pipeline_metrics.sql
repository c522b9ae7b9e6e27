-- Pipeline metrics the workers report (consumer lag, batch sizes, ...): one row per sample.
-- Read by the Pipeline health dashboard and the pipeline-lag alert rule:
--   metric = 'consumer_lag': records behind the head of the events topic, for the worker's
--   assigned partitions (value), sampled every few seconds.
CREATE TABLE IF NOT EXISTS {db}.pipeline_metrics
(
    time    DateTime64(3, 'UTC'),
    worker  String,
    metric  LowCardinality(String),
    value   Float64
)
ENGINE = MergeTree
ORDER BY (metric, worker, time)
TTL toDateTime(time) + INTERVAL 30 DAY;

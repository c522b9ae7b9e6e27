"""Getting events into Kafka: the emitter library, file publishing and the workload simulator."""

"""keysync's usage analytics on Apache Flink: the per-minute aggregates of the usage
events keysync exports, and the anomaly alerts of keysync's own detector, computed as
the events stream by (docs/analytics.md)."""

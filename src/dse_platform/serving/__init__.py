"""The streaming job: record validation, per-instrument state, scoring, the sinks."""

"""Daily monitoring: feature drift, live accuracy, dead letters and alerts."""

"""Raw DSE files to the canonical bar store: formats, quality rules, the trading calendar, ingest."""

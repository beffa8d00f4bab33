"""Wire and storage contracts: topic records, the serving tables and their migrations."""

"""Kafka: topics and clients, the replay of stored bars and the live DSE connector."""

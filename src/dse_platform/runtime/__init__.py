"""The local runtime: supervised services, health checks, jars, the broker, PostgreSQL, the demo."""

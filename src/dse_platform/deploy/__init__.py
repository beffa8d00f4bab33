"""The multi-service deployment (docker-compose.yml, Dockerfile.*) as seen from Python: its static check."""

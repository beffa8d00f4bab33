"""Real-time MLOps platform for the Dhaka Stock Exchange."""

__version__ = "0.1.0"

"""What the operator and the worker both speak: job and event messages, the ladder, settings."""

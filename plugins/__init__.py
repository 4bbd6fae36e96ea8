"""harmony-pipes: NDJSON stream processors (the folder plugins/ is this import package)."""

__version__ = "0.1.0"

"""Fixtures shared by the integration tests (besides tests/conftest.py's)."""

from tests.helpers.discovery import clean, moto, proxy  # noqa: F401  (the EC2 moto server, its reset, its proxy)

"""Shared fixtures; JACK fixtures live in tests/integration/conftest.py."""

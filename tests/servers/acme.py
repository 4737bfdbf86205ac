"""Test server fixtures (filled by the area that needs them)."""

"""Test guests for machina's end-to-end tests (built from source, no downloads)."""

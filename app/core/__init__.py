"""The numerical core: pure NumPy, no web framework (a test keeps it that way)."""

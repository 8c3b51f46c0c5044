"""Generators of checked-in files (run them from the repository root; each says how)."""

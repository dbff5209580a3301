"""CLI commands: simulate (to be filled in)."""

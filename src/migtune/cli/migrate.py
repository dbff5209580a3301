"""CLI commands: migrate (to be filled in)."""

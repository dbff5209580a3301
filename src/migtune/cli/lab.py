"""CLI commands: lab (to be filled in)."""

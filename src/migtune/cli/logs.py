"""CLI commands: logs (to be filled in)."""

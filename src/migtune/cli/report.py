"""CLI commands: report (to be filled in)."""

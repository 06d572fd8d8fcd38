"""The command line, split by command group; cli.py (top level) mounts them on one typer app."""

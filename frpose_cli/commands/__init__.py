"""CLI verbs: each module holds one Typer command that parses options and calls the core."""

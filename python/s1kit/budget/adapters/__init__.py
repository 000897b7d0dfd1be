"""Adapters that embed the budget core in inference stacks (each imports its stack lazily)."""

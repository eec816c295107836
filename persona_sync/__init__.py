"""persona-sync: evaluate employees against persona rules and write the result to a directory."""

__version__ = "0.1.0"

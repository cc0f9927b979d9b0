"""The Typer command line, installed as `anomalyvae.cli`: parse flags, call the library, print."""

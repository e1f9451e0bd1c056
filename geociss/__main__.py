"""``python -m geociss`` runs the command-line interface."""

from geociss.cli.main import cli

cli()

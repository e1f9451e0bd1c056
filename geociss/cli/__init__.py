"""Command-line interface: one module per command, registered in :mod:`geociss.cli.main`."""

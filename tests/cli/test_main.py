import subprocess
import sys

from click.testing import CliRunner

from geociss import __version__
from geociss.cli.main import COMMANDS, cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_and_import_stay_light():
    """`geociss --help` and `import geociss` must not import torch, rasterio or geopandas."""
    code = (
        "import sys\n"
        "import geociss\n"
        "from geociss.cli.main import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'rasterio', 'geopandas', 'lightning') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_every_registered_command_imports():
    import importlib

    for module, attr, _ in COMMANDS.values():
        assert callable(getattr(importlib.import_module(module), attr))


def test_unknown_command_fails():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output

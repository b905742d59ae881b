"""The command-line surface: help, version, usage errors, and a light start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from d2c import __version__

REPO = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("boto3", "botocore", "pandas", "numpy", "pulp", "paramiko", "matplotlib", "rich", "scipy", "psutil")


def _d2c(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "d2c", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=60,
    )


def test_help_lists_the_commands():
    result = _d2c("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: d2c [OPTIONS] COMMAND [ARGS]...")
    commands = result.stdout.split("Commands:", 1)[1]
    for name in ("init", "check"):
        assert f"\n  {name} " in commands, commands
    assert "Desktop to Cloud" in result.stdout


def test_short_help_option_and_subcommand_help():
    assert _d2c("-h").stdout == _d2c("--help").stdout
    result = _d2c("check", "--help")
    assert result.returncode == 0
    assert "Usage: d2c check [OPTIONS] [PATH]" in result.stdout


def test_version_prints_the_package_version():
    result = _d2c("--version")
    assert result.returncode == 0
    assert result.stdout == f"d2c, version {__version__}\n"


def test_unknown_option_is_one_error_line_and_exit_2():
    result = _d2c("--frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert "--frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_one_error_line_and_exit_2():
    result = _d2c("deploy")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "deploy" in result.stderr


def test_unknown_subcommand_option_names_the_command(tmp_path: Path):
    result = _d2c("init", "--frm", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: d2c init: ") and "--frm" in result.stderr
    assert not (tmp_path / "d2c.yaml").exists()


def test_help_does_not_import_heavy_modules():
    probe = (
        "import json, sys\n"
        "from d2c.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY_MODULES)!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "Commands:" in result.stdout
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


def test_help_import_time_report_has_no_heavy_module():
    """``python -X importtime`` lists every module imported; none of the heavy ones may be there."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "d2c", "--help"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "d2c" in imported
    assert imported.isdisjoint(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))

"""The CLI skeleton: version, help, one-line errors with exit 2, --debug tracebacks."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO_ROOT


def run_cli(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsuite.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_version_and_help():
    from medsuite import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"medsuite {__version__}"
    help_text = run_cli("--help").stdout
    for command in ("demo", "cards"):
        assert command in help_text
    assert "--install-completion" in help_text


def test_user_errors_are_one_line_exit_2_without_traceback(tmp_path):
    result = run_cli("cards", "show", "no_such_card")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no_such_card: no such data card;") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    result = run_cli("cards", "validate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "no such card file or folder" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run_cli("--debug", "cards", "show", "no_such_card")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unknown_option_is_a_usage_error():
    result = run_cli("cards", "validate", "--no-such-option")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_demo_refuses_an_unknown_part_before_any_work(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "demo"), "--only", "none_such")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "none_such" in result.stderr and "segment" in result.stderr  # names the parts that exist
    assert not (tmp_path / "demo").exists()


def test_demo_quiet_prints_only_the_results_folder(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "demo"), "--only", "concepts", "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((tmp_path / "demo").resolve()) and (tmp_path / "demo" / "concepts").is_dir()

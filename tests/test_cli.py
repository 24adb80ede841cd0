"""The command line (ir2net.cli): one module per group of subcommands, assembled by ``main``.
Every subcommand's ``--help`` is held against a committed copy (tests/cli_help.json), so that
a help text changes only on purpose.  After changing one on purpose:
``IR2NET_UPDATE_CLI_HELP=1 python -m pytest tests/test_cli.py``, then review the JSON diff."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ir2net import cli

SNAPSHOT = Path(__file__).with_name("cli_help.json")
#: argparse's layout differs between Python versions ("options:" since 3.10, wrapping); the
#: snapshot was written with this one
SNAPSHOT_PYTHON = (3, 11)


def help_text(monkeypatch, *command) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        cli.main([*command, "--help"])
    assert stopped.value.code == 0
    return out.getvalue()


def subcommands(top_help: str) -> list[str]:
    return re.search(r"\{([^}]*)\}", top_help).group(1).split(",")


def test_every_subcommand_help_is_the_committed_one(monkeypatch):
    if sys.version_info[:2] != SNAPSHOT_PYTHON:
        pytest.skip(f"the help snapshot was written with Python {SNAPSHOT_PYTHON}, whose "
                    f"argparse layout differs from {sys.version_info[:2]}")
    top = help_text(monkeypatch)
    texts = {"": top, **{name: help_text(monkeypatch, name) for name in subcommands(top)}}
    if os.environ.get("IR2NET_UPDATE_CLI_HELP") == "1":
        SNAPSHOT.write_text(json.dumps(texts, indent=1, ensure_ascii=False) + "\n")
    committed = json.loads(SNAPSHOT.read_text())
    assert sorted(texts) == sorted(committed), "subcommands added or removed: update the snapshot"
    for name, text in texts.items():
        assert text == committed[name], f"`ir2net {name} --help` changed"


def test_each_group_module_defines_the_commands_it_lists(monkeypatch):
    """A command's function lives in the module of its group, next to its arguments, and
    ``ir2net --help`` lists the groups in order."""
    parser = cli.build_parser()
    actions = next(a for a in parser._actions if a.dest == "command")
    listed = list(actions.choices)
    seen = []
    for group in cli.GROUPS:
        names = [name for name in listed
                 if actions.choices[name].get_default("func").__module__ == group.__name__]
        assert names, f"{group.__name__} defines no command"
        seen += names
    assert seen == listed


def test_python_dash_m_runs_the_command_line():
    """The workflow and torchrun call ``python -m ir2net.cli``."""
    result = subprocess.run([sys.executable, "-m", "ir2net.cli", "rules"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "authors:" in result.stdout and "paper:" in result.stdout


def test_a_bad_value_fails_with_the_usage_line(monkeypatch, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["ires-coverage", "run", "--lam", "1.5"])
    assert stopped.value.code == 2
    assert "λ must lie in [0, 1] (Eq. 9), got 1.5" in capsys.readouterr().err

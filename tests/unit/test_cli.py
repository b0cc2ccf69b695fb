from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lexlip_app.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _command_paths(sub, (*prefix, name))
    return paths


PATHS = _command_paths(build_parser())


def test_the_command_tree_is_complete() -> None:
    assert {("engines", a) for a in ("start", "stop", "status", "fetch")} <= set(PATHS)
    assert ("demo",) in PATHS and ("version",) in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "lexlip")
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lexlip") and len(out.splitlines()) > 2


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lexlip_app.cli", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("lexlip-es ")


def test_unknown_engine_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    assert main(["engines", "stop", "--only", "solr"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lexlip: error: unknown engine(s) solr") and err.count("\n") == 1

"""Every command's ``--help``: it works, every option says what it does, nothing promises
an option the command does not have, and no word is cut in two by the line wrapping."""

from __future__ import annotations

import re

import click
import pytest

from migtune.cli.main import _register, cli, main

_register()


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, cmd in sorted(group.commands.items()):
        found.append(((*path, name), cmd))
        if isinstance(cmd, click.Group):
            found.extend(_commands(cmd, (*path, name)))
    return found


COMMANDS = _commands(cli)
IDS = [" ".join(path) for path, _ in COMMANDS]
# click wraps help at spaces (and after hyphens); a longer run of characters without
# either would be cut mid-word, as "n ova" once was.
LONGEST_UNBREAKABLE = 40


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and "--help" not in p.opts]


def _help_output(path: tuple[str, ...], capsys) -> str:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    # undo the wrapping: a line break after a hyphen joins the word back together
    return re.sub(r"-\n\s+", "-", out)


def test_the_commands_are_all_there():
    assert {"explain", "diagnose", "simulate", "migrate", "report", "lab run", "lab matrix"} <= set(
        IDS
    )


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_help_runs_and_every_option_is_described(path, cmd, capsys):
    out = _help_output(path, capsys)
    assert out.startswith(f"Usage: migtune {' '.join(path)}")
    assert (cmd.help or "").strip(), "the command has no description"
    for opt in _options(cmd):
        assert (opt.help or "").strip(), f"{opt.opts[0]} has no help text"
        assert opt.opts[0] in out


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_no_option_is_promised_that_the_command_lacks(path, cmd, capsys):
    out = _help_output(path, capsys)
    own = {o for p in _options(cmd) for o in (*p.opts, *p.secondary_opts)}
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", out))
    foreign = mentioned - own - {"--help"}
    if isinstance(cmd, click.Group):
        return  # a group's help lists sub-commands, not options
    assert not foreign, f"help mentions {sorted(foreign)}, which `{' '.join(path)}` has not"
    if path != ("migrate",):
        assert "--dest-qmp" not in out


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_no_help_word_is_long_enough_to_be_cut(path, cmd):
    texts = [cmd.help or ""] + [o.help or "" for o in _options(cmd)]
    for text in texts:
        for word in text.split():
            parts = re.split(r"(?<=-)", word)  # click may break after a hyphen
            assert max(map(len, parts)) <= LONGEST_UNBREAKABLE, word

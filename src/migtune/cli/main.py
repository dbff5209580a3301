"""The ``migtune`` command: a thin layer over the library.

Each sub-command lives in its own module and calls one library function; this
module only assembles them and turns errors into one-line messages and exit codes.
"""

from __future__ import annotations

import os
import re
import sys

import click

from migtune import __version__
from migtune.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_UNAVAILABLE,
    InputError,
    MigtuneError,
)
from migtune.model import Run


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="migtune")
def cli() -> None:
    """Understand and tune QEMU/KVM live migration.

    Explain and diagnose migration logs (Proxmox, QMP, HMP, virsh, nova), simulate
    what-ifs, find settings that converge, and drive real migrations over QMP.
    """


def _register() -> None:
    # Importing a command module registers its commands on ``cli``.
    from migtune.cli import (  # noqa: F401
        history,
        lab,
        logs,
        migrate,
        plan,
        preflight,
        report,
        simulate,
        tune,
    )


def one_line(message: str) -> str:
    """Collapse a message onto one line: errors must stay greppable and fit a log line."""
    return " ".join(str(message).split())


def error_line(message: str) -> None:
    print(f"migtune: error: {one_line(message)}", file=sys.stderr)


def warning_line(message: str) -> None:
    print(f"migtune: warning: {one_line(message)}", file=sys.stderr)


def _param_name(param: click.Parameter | None) -> str | None:
    """How the user typed the parameter: ``--downtime-limit`` for options, ``LOG`` for arguments."""
    if param is None:
        return None
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts or [param.name or "?"])[0]
    return param.metavar or (param.name or "?").upper()


def _lower_first(text: str) -> str:
    # click's messages are sentences ("File 'x' is a directory."); ours are clauses.
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


_EXTRA_ARGS = re.compile(r"unexpected extra arguments? \((.*)\)")


def usage_message(exc: click.exceptions.UsageError) -> str:
    """``<option>: <what is wrong>`` for a click usage error, instead of its usage block."""
    ex = click.exceptions
    if isinstance(exc, ex.NoSuchOption):
        hint = f" (did you mean {', '.join(exc.possibilities)}?)" if exc.possibilities else ""
        return f"{exc.option_name}: no such option{hint}"
    if isinstance(exc, ex.NoSuchCommand):
        known = sorted(exc.ctx.command.list_commands(exc.ctx)) if exc.ctx else []
        where = f" (known: {', '.join(known)})" if known else ""
        return f"{exc.command_name}: no such command{where}"
    if isinstance(exc, ex.BadOptionUsage):
        if "requires" in exc.message:
            return f"{exc.option_name}: needs a value"
        return f"{exc.option_name}: {_lower_first(exc.message)}"
    if isinstance(exc, ex.MissingParameter):
        name = _param_name(exc.param) or exc.param_hint or "?"
        kind = "argument" if isinstance(exc.param, click.Argument) else "option"
        return f"{name}: missing (a required {kind})"
    if isinstance(exc, ex.BadParameter):
        name = _param_name(exc.param) or exc.param_hint or "value"
        return f"{name}: {_lower_first(exc.message)}"
    extra = _EXTRA_ARGS.search(exc.message)
    if extra:
        return f"{extra.group(1)}: unexpected extra argument"
    command = exc.ctx.command_path if exc.ctx else "migtune"
    return f"{command}: {_lower_first(exc.message)}"


def _recognised_anything(run: Run) -> bool:
    # Parsers keep lines they do not understand as plain "info" events; those say nothing.
    return bool(
        run.samples
        or run.ram_bytes is not None
        or run.status != "unknown"
        or any(e.kind != "info" for e in run.events)
    )


def load_log(path: str, fmt: str | None = None, observe=None) -> Run:
    """``load_run`` for the commands: every error names the file, and a format forced
    with ``--format`` that recognises nothing in the file is bad input, not an empty run.
    ``observe``: see :func:`migtune.sources.parse_lines`."""
    from migtune.sources import load_run

    name = "standard input" if path == "-" else str(path)
    if "\x00" in name:
        raise InputError(f"{name!r}: not a file name (it contains a NUL byte)")
    try:
        run = load_run(path, fmt, observe=observe)
    except MigtuneError as exc:
        if name not in exc.message and str(path) not in exc.message:
            exc.message = f"{name}: {exc.message}"
            exc.args = (exc.message,)
        raise
    if fmt and not _recognised_anything(run):
        raise InputError(f"{name}: nothing in it reads as a {fmt} log (--format {fmt})")
    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, map errors to exit codes, never show a traceback."""
    _register()
    try:
        rv = cli.main(args=argv, prog_name="migtune", standalone_mode=False)
    except MigtuneError as exc:
        error_line(str(exc))
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        # `migtune` or `migtune lab` alone: the help is the answer, as click shows it.
        exc.show()
        return exc.exit_code
    except click.exceptions.UsageError as exc:  # bad option values, missing options: exit 2
        error_line(usage_message(exc))
        return EXIT_BAD_INPUT
    except click.exceptions.ClickException as exc:
        error_line(exc.format_message())
        return exc.exit_code
    except ValueError as exc:
        # The OS cannot even look a path up that holds a NUL byte; Python says so this way.
        if "embedded null byte" not in str(exc) or os.environ.get("MIGTUNE_DEBUG"):
            return _internal(exc)
        error_line("a file name contains a NUL byte")
        return EXIT_BAD_INPUT
    except MemoryError:
        # A guest too large to simulate on this machine: a missing resource, not a bug.
        error_line("out of memory (a smaller --ram, or a machine with more memory)")
        return EXIT_UNAVAILABLE
    except (KeyboardInterrupt, click.exceptions.Abort):
        error_line("interrupted")
        return 130
    except BrokenPipeError:
        # `migtune explain log | head`: the reader went away; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        return _internal(exc)
    # With standalone_mode=False click returns the value of ctx.exit(code) / the command.
    return rv if isinstance(rv, int) else 0


def _internal(exc: Exception) -> int:
    if os.environ.get("MIGTUNE_DEBUG"):
        raise exc
    error_line(f"internal error: {type(exc).__name__}: {exc} (set MIGTUNE_DEBUG=1 for details)")
    return EXIT_INTERNAL


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

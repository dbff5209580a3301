"""The ``migtune`` command: a thin layer over the library.

Each sub-command lives in its own module and calls one library function; this
module only assembles them and turns errors into one-line messages and exit codes.
"""

from __future__ import annotations

import os
import sys

import click

from migtune import __version__
from migtune.errors import EXIT_INTERNAL, MigtuneError


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
    from migtune.cli import lab, logs, migrate, report, simulate  # noqa: F401


def error_line(message: str) -> None:
    print(f"migtune: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, map errors to exit codes, never show a traceback."""
    _register()
    try:
        rv = cli.main(args=argv, prog_name="migtune", standalone_mode=False)
    except MigtuneError as exc:
        error_line(str(exc))
        return exc.exit_code
    except click.exceptions.ClickException as exc:  # usage errors: exit 2
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        error_line("interrupted")
        return 130
    except BrokenPipeError:
        # `migtune explain log | head`: the reader went away; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("MIGTUNE_DEBUG"):
            raise
        error_line(f"internal error: {type(exc).__name__}: {exc} (set MIGTUNE_DEBUG=1 for details)")
        return EXIT_INTERNAL
    # With standalone_mode=False click returns the value of ctx.exit(code) / the command.
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

"""The `nasc` command: parse, load build.toml, call one library function per verb, render, map errors.

Verbs live in small modules (nasc/cli/*.py) that register click commands on `main`; no logic here.
Every verb that reports a result takes --json and then prints that result as JSON on stdout.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from nasc import __version__
from nasc.errors import INTERRUPTED_EXIT, UNEXPECTED_EXIT, NascError
from nasc.pipeline.config import Config, load_config

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# Modules that add verbs to `main` when imported.
VERB_MODULES = (
    "nasc.cli.compile",
    "nasc.cli.devices",
    "nasc.cli.firmware",
    "nasc.cli.search",
    "nasc.cli.search_and_compile",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nasc")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Project file (default: ./build.toml, else the embedded default).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (or set NASC_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """nasc: search, compile and ship neural networks for a specific edge device."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["debug"] = debug or os.environ.get("NASC_DEBUG", "") not in ("", "0")


def get_config(ctx: click.Context) -> Config:
    """The project file named by --config (loaded once per invocation)."""
    root = ctx.find_root()
    if "config" not in root.obj:
        root.obj["config"] = load_config(root.obj.get("config_path"))
    return root.obj["config"]


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")


def print_json(data: Any) -> None:
    """The result of a verb as JSON on stdout (plain, so pipes and jq read it)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def handles_errors(func: F) -> F:
    """NascError -> its message and exit code; anything else -> one line and UNEXPECTED_EXIT.

    Tracebacks only with --debug or NASC_DEBUG=1.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().obj.get("debug"))
        try:
            return func(*args, **kwargs)
        except NascError as exc:
            if debug:
                console.print_exception()
            console.print(Text.assemble(("error", "bold red"), ": ", str(exc)), soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            sys.exit(INTERRUPTED_EXIT)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if debug:
                console.print_exception()
            text = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")
            console.print(Text.assemble(
                ("error", "bold red"), f": `nasc {ctx.command_path.partition(' ')[2]}` failed unexpectedly ({detail}); "
                "run again with --debug (or NASC_DEBUG=1) for the traceback"), soft_wrap=True)
            sys.exit(UNEXPECTED_EXIT)

    return wrapper  # type: ignore[return-value]


def _register_verbs() -> None:
    for module in VERB_MODULES:
        importlib.import_module(module)


_register_verbs()

"""The `nasc` command: parse, load build.toml, call one library function per verb, map errors.

Verbs live in small modules (nasc/cli_*.py) that register click commands on `main`; no logic here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from nasc import __version__
from nasc.config import Config, load_config
from nasc.errors import NascError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# Modules that add verbs to `main` when imported.
VERB_MODULES = (
    "nasc.cli_compile",
    "nasc.cli_devices",
    "nasc.cli_firmware",
    "nasc.cli_search",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nasc")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Project file (default: ./build.toml, else the embedded default).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """nasc: search, compile and ship neural networks for a specific edge device."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["debug"] = debug


def get_config(ctx: click.Context) -> Config:
    """The project file named by --config (loaded once per invocation)."""
    root = ctx.find_root()
    if "config" not in root.obj:
        root.obj["config"] = load_config(root.obj.get("config_path"))
    return root.obj["config"]


def handles_errors(func: F) -> F:
    """Turn NascError into a message and its exit code; tracebacks only with --debug."""

    @wraps(func)
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
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _register_verbs() -> None:
    for module in VERB_MODULES:
        importlib.import_module(module)


_register_verbs()

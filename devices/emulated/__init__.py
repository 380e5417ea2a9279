"""nasc.devices.emulated: an aarch64 board emulated with qemu-user (a cached Debian root file system + the stock
TVM RPC server inside it). Everything measured there is labelled emulated, never hardware latency."""

from .recipe import RECIPES, BoardRecipe, RootfsStamp, recipe_for
from .rootfs import cached_rootfs, ensure_rootfs, remove_rootfs, rootfs_path
from .server import EMULATED_BANNER, emulated_server, serve_emulated, server_command

__all__ = [
    "EMULATED_BANNER",
    "RECIPES",
    "BoardRecipe",
    "RootfsStamp",
    "cached_rootfs",
    "emulated_server",
    "ensure_rootfs",
    "recipe_for",
    "remove_rootfs",
    "rootfs_path",
    "serve_emulated",
    "server_command",
]

"""The tiny search project the search tests share: a few seconds of search on 8x8 digits."""

from __future__ import annotations

TINY_SPACE = """
[search.space]
resolution = 8
in_channels = 1
stem_channels = 8
stem_stride = 1
head_expand = 2
ops = ["k3_e3", "k5_e3", "zero"]
stages = [{channels = 8, depth = 2, stride = 1}, {channels = 16, depth = 1, stride = 2}]
"""


def tiny_project(*, latency_ms: float = 0.05, seed: int = 0, warmup_epochs: int = 1, epochs: int = 2,
                 final_epochs: int = 8, final_init: str = "scratch", table_trials: int = 0, extra: str = "") -> str:
    """build.toml text of the tiny project (`extra` is appended: more tables such as [measure])."""
    return f"""
[search]
latency_ms = {latency_ms}
seed = {seed}
final_epochs = {final_epochs}
table_trials = {table_trials}
[search.proxyless]
warmup_epochs = {warmup_epochs}
epochs = {epochs}
final_init = "{final_init}"
{TINY_SPACE}
{extra}
"""

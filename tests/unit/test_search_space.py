"""SearchSpace layers and candidate blocks, ArchSpec codec, build / build_block shapes, settings errors."""

from __future__ import annotations

import json

import pytest
import torch

from nasc.errors import ConfigError
from nasc.pipeline.config import parse_config
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build, build_block
from nasc.signature import BlockSignature

SPACE = SearchSpace(SpaceSettings(), num_classes=10)


def test_layers_follow_the_stages_and_allow_zero_only_where_the_shortcut_exists() -> None:
    layers = SPACE.layers()
    assert len(layers) == sum(stage.depth for stage in SPACE.settings.stages)
    size = SPACE.settings.resolution // SPACE.settings.stem_stride
    cin = SPACE.settings.stem_channels
    for layer in layers:
        assert (layer.in_channels, layer.in_size) == (cin, size)
        assert ("zero" in layer.ops) == (layer.stride == 1 and layer.in_channels == layer.out_channels)
        cin, size = layer.out_channels, (size + layer.stride - 1) // layer.stride


def test_candidate_blocks_are_distinct_complete_and_never_zero() -> None:
    blocks = SPACE.candidate_blocks()
    assert len(blocks) == len(set(blocks))
    assert blocks[0].op == "stem" and blocks[-1].op == "head"
    assert all(b.op != "zero" for b in blocks)
    wanted = {layer.signature(op) for layer in SPACE.layers() for op in layer.ops if op != "zero"}
    assert set(blocks[1:-1]) == wanted
    for block in blocks:
        assert BlockSignature.parse(block.key()) == block


def test_archspec_round_trips_through_json_and_reads_compactly() -> None:
    ops = ("k3_e3", "zero", "k5_e6", "k7_e3", "k7_e6", "zero")
    arch = ArchSpec(SPACE, ops)
    again = ArchSpec.from_dict(json.loads(json.dumps(arch.to_dict())))
    assert again == arch
    assert arch.block_strings() == [
        "ir_k3_e3_s2_c24", "zero", "ir_k5_e6_s2_c40", "ir_k7_e3_s1_c40", "ir_k7_e6_s1_c64", "zero",
    ]
    assert [b.op for b in arch.blocks()] == ["stem", "mbconv", "mbconv", "mbconv", "mbconv", "head"]
    assert arch.blocks()[2] == BlockSignature("mbconv", 24, 40, 8, kernel=5, expand=6, stride=2)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (("zero",) * 6, "not a candidate"),  # the first layer has stride 2
        (("k3_e3",) * 5, "6 searchable layers"),
        (("k9_e3",) * 6, "not a candidate"),
    ],
)
def test_archspec_refuses_ops_the_space_does_not_have(ops: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArchSpec(SPACE, ops)


def test_arch_json_whose_blocks_disagree_with_its_ops_is_refused() -> None:
    data = ArchSpec.uniform(SPACE, "k3_e6").to_dict()
    data["blocks"][0] = "ir_k7_e6_s2_c24"
    with pytest.raises(ValueError, match="disagree"):
        ArchSpec.from_dict(data, "x/arch.json")


def test_build_runs_and_skips_zero_layers() -> None:
    arch = ArchSpec(SPACE, ("k3_e3", "zero", "k5_e6", "zero", "k7_e6", "zero"))
    net = build(arch).eval()
    assert net(torch.randn(2, *SPACE.input_shape()[1:])).shape == (2, 10)
    assert [layer.op is None for layer in net.layers] == [False, True, False, True, False, True]
    full = build(ArchSpec.uniform(SPACE, "k7_e6"))
    assert sum(p.numel() for p in full.parameters()) > sum(p.numel() for p in net.parameters())


def test_build_block_output_matches_its_signature() -> None:
    for sig in SPACE.candidate_blocks():
        out = build_block(sig).eval()(torch.randn(sig.input_shape()))
        if sig.op == "head":
            assert out.shape == (1, sig.out_channels)
        else:
            assert out.shape == (1, sig.out_channels, sig.out_size, sig.out_size)


def test_space_settings_errors_name_the_key() -> None:
    text = '[search.space]\nops = ["k3_e3", "k4_e6"]\n'
    with pytest.raises(ConfigError, match=r"build.toml.*search.space.*k4_e6"):
        parse_config(text, "build.toml")
    with pytest.raises(ConfigError, match=r"search.space.stages\[0\]'.*stride must be 1 or 2"):
        parse_config("[search.space]\nstages = [{channels = 8, stride = 3}]\n", "build.toml")


def test_space_from_settings_tables() -> None:
    text = '[search.space]\nresolution = 16\nin_channels = 1\nstages = [{channels = 8, depth = 3, stride = 2}]\n'
    space = SearchSpace(parse_config(text, "build.toml").search.space, 4)
    assert space.settings.stages == (StageSettings(8, 3, 2),)
    assert [layer.in_size for layer in space.layers()] == [8, 4, 4]
    assert space.head_signature() == BlockSignature("head", 8, 4, 4, expand=4)


def test_search_result_round_trips_through_json() -> None:
    from nasc.search.outputs import SearchResult

    result = SearchResult(
        arch=ArchSpec.uniform(SPACE, "k5_e3"), strategy="proxyless", predicted_ms=0.061, block_sum_ms=0.058,
        budget_ms=0.06, meets_budget=False, test_accuracy=0.97, valid_accuracy=0.96, seed=3,
        out_dir="out/search", preprocessing={"mean": [0.1], "std": [0.3]},
        figures={"expected_ms": 0.0605, "arch_algo": "grad"},
    )
    assert SearchResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_search_result_with_a_missing_key_names_the_file_and_key() -> None:
    from nasc.errors import InputError
    from nasc.search.outputs import SearchRecord, SearchResult

    result = SearchResult(
        arch=ArchSpec.uniform(SPACE, "k3_e3"), strategy="proxyless", predicted_ms=0.05, block_sum_ms=0.05,
        budget_ms=None, meets_budget=None, test_accuracy=0.9, valid_accuracy=0.9, seed=0, out_dir="o",
        preprocessing={},
    )
    record = SearchRecord(True, "proxyless", {}, {}, {}, (), result).to_dict()
    del record["result"]["test_accuracy"]
    with pytest.raises(InputError, match=r"out/search.json.*'test_accuracy' is missing"):
        SearchRecord.from_dict(record, "out/search.json")

"""The path-level strategy on the shared runtime: a search grows the start network round by round and
writes a path-level arch.json, a model.pt that rebuilds with the reported accuracy and search.json with
the rounds; the final network inherits the grown one's weights; a search stopped mid-round (and again
mid-final-training) and resumed ends identical; bad [search.path_level] values name their key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from search_fakes import MacsPredictor, block_macs
from tiny_project import tiny_project

from nasc.errors import ConfigError, SearchError
from nasc.events import ProgressEvent
from nasc.pipeline.config import Config, parse_config
from nasc.search.data import load_data
from nasc.search.outputs import SearchRecord, load_trained
from nasc.search.path_level.cell import PATH_ARCH_FORMAT, PathArch
from nasc.search.path_level.policy import RandomPolicy
from nasc.search.path_level.start import start_arch
from nasc.search.runtime import run_search, search_space
from nasc.search.settings import SearchSettings
from nasc.search.space import SearchSpace
from nasc.search.training import accuracy

ROUNDS = 3
PATH_LEVEL = f"""
[search.path_level]
start_epochs = 1
rounds = {ROUNDS}
moves_per_round = 3
finetune_steps = 4
"""


def project(final_epochs: int, extra: str = "") -> Config:
    """The tiny project searched by path-level; `extra` lines of [search.path_level] replace its own."""
    replaced = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    table = "\n".join(line for line in PATH_LEVEL.splitlines() if line.split("=")[0].strip() not in replaced)
    text = tiny_project(seed=5, final_epochs=final_epochs, extra=f"{table}\n{extra}\n")
    return parse_config(text.replace("[search]\n", '[search]\nstrategy = "path-level"\n', 1), "tiny.toml")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted search with one final epoch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("whole")
    config = project(final_epochs=1)
    try:
        run_search(config.search, config.data, MacsPredictor(), out)
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_search_writes_a_path_level_network_its_weights_and_its_rounds(whole: Path) -> None:
    config = project(final_epochs=1)
    arch_json = json.loads((whole / "arch.json").read_text())
    assert arch_json["format"] == PATH_ARCH_FORMAT
    record = SearchRecord.load(whole)
    result = record.finished_result(whole)
    assert isinstance(result.arch, PathArch) and result.strategy == "path-level"

    arch, net = load_trained(whole)
    assert arch == result.arch
    data = load_data(config.data, config.search.space, config.search.seed)
    assert accuracy(net, data.test) == result.test_accuracy
    assert result.predicted_ms == pytest.approx(MacsPredictor().network_ms(arch.blocks()))

    assert [h["stage"] for h in record.history] == ["warmup"] + ["path-level"] * ROUNDS + ["final"]
    rounds = [h["path_round"] for h in record.history if "path_round" in h]
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    assert result.figures["rounds"] == rounds
    start = str(start_arch(search_space(config.search, config.data), "mobilenetv2"))
    assert rounds[0]["arch"] == start == result.figures["start"]
    for previous, now in zip([None, *rounds], rounds, strict=False):
        assert previous is None or now["arch"] == previous["arch_after"]  # each round starts where the last ended
        assert len(now["moves"]) == 3
        assert all(move["max_output_change"] <= 1e-3 for move in now["moves"])
        best = max(move["reward"] for move in now["moves"])
        assert (now["accepted"] is not None) == (best > now["current"]["reward"])
        assert now["arch_after"] == (now["moves"][now["best_index"]]["arch"] if now["accepted"] else now["arch"])
    assert rounds[-1]["arch_after"] == str(result.arch)
    assert result.figures["accepted_moves"] == [r["accepted"] for r in rounds if r["accepted"]]


@pytest.mark.parametrize("policy", ["controller", "random"])
def test_the_final_network_inherits_the_grown_network(tmp_path: Path, policy: str) -> None:
    config = project(final_epochs=0, extra=f"policy = '{policy}'")
    result = run_search(config.search, config.data, MacsPredictor(), tmp_path)
    grown = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["strategy"]["net"]
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert model.keys() == grown.keys()
    assert all(torch.equal(model[key], grown[key]) for key in model)
    last = [h for h in SearchRecord.load(tmp_path).history if h["stage"] == "path-level"][-1]
    assert last["valid_accuracy"] == pytest.approx(result.valid_accuracy, abs=1e-6)  # the same network and split
    assert last["derived"] == str(result.arch)


class Stop(Exception):
    """A simulated kill."""


def stop_at(stage: str, label: str) -> object:
    def progress(event: ProgressEvent) -> None:
        if event.stage == stage and event.label == label and event.step == 1:
            raise Stop

    return progress


def test_a_search_stopped_mid_round_and_mid_final_training_resumes_identical(tmp_path: Path, whole: Path) -> None:
    config = project(final_epochs=1)
    out = tmp_path / "stopped"
    with pytest.raises(Stop):  # one candidate of round 2 done, round 1 in the checkpoint
        run_search(config.search, config.data, MacsPredictor(), out, progress=stop_at("path-level", "round 2/3"))
    assert len(SearchRecord.load(out).history) == 2
    with pytest.raises(Stop):  # the first batch of the final training
        run_search(config.search, config.data, MacsPredictor(), out, resume=True,
                   progress=stop_at("final", "epoch 1/1"))
    assert not (out / "arch.json").exists()
    run_search(config.search, config.data, MacsPredictor(), out, resume=True)

    a, b = (json.loads((folder / "search.json").read_text()) for folder in (whole, out))
    assert b["history"] == a["history"]
    a["result"].pop("out_dir"), b["result"].pop("out_dir")
    assert b["result"] == a["result"]
    assert (out / "arch.json").read_text() == (whole / "arch.json").read_text()
    wa, wb = (torch.load(folder / "model.pt", weights_only=True) for folder in (whole, out))
    assert all(torch.equal(wa[key], wb[key]) for key in wa)


def test_a_checkpoint_of_the_previous_format_is_refused(tmp_path: Path) -> None:
    config = project(final_epochs=0)
    torch.save({"format": 2, "stage": "search", "arch_ops": None}, tmp_path / "checkpoint.pt")
    with pytest.raises(SearchError, match="the checkpoint was made with other settings, data, latencies or nasc"):
        run_search(config.search, config.data, MacsPredictor(), tmp_path, resume=True)


@pytest.mark.parametrize(("table", "message"), [
    ("rounds = -1", "'search.path_level': rounds must be >= 0"),
    ("moves_per_round = 0", "'search.path_level': moves_per_round must be >= 1"),
    ("finetune_steps = 0", "'search.path_level': finetune_steps must be >= 1"),
    ("baseline_step = 0", "'search.path_level': baseline_step must be in (0, 1]"),
    ("start = 'uniform:'", "'search.path_level': start must be 'mobilenetv2', 'uniform:CELL'"),
    ("policy = 'greedy'", "'search.path_level.policy': got 'greedy', expected one of 'controller', 'random'"),
    ("penalty = 'add'", "'search.path_level.penalty': got 'add'"),
    ("epochs = 3", "'search.path_level.epochs': unknown key"),
])
def test_bad_path_level_settings_name_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"tiny.toml: key {message}")):
        project(final_epochs=0, extra=table)


@pytest.mark.parametrize("start", ["k3_e3 k3_e3", "uniform:k3_e3>max3>sep3>conv1>conv1", "uniform:zero"])
def test_a_start_network_that_does_not_fit_names_the_setting(tmp_path: Path, start: str) -> None:
    config = project(final_epochs=0).with_section("search.path_level", start=start)
    with pytest.raises(ConfigError, match=r"\[search.path_level\] start: "):
        run_search(config.search, config.data, MacsPredictor(), tmp_path)


def test_the_start_setting_reads_its_three_forms() -> None:
    space = SearchSpace(SearchSettings().space, num_classes=10)
    assert start_arch(space, "mobilenetv2").cell_strings() == ["k3_e6"] * 6  # MobileNetV2's block
    tiny = search_space(project(0).search, project(0).data, num_classes=10)
    assert start_arch(tiny, "mobilenetv2").cell_strings() == ["k3_e3"] * 3  # the tiny space has no e6
    assert start_arch(tiny, "uniform:add(sep3,conv1)").cell_strings() == ["add(sep3,conv1)"] * 3
    assert start_arch(tiny, " k5_e3  zero cat(sep3,conv1) ").cell_strings() == ["k5_e3", "zero", "cat(sep3,conv1)"]


def test_the_fake_predictor_prices_a_cell_by_its_convolutions() -> None:
    tiny = search_space(project(0).search, project(0).data, num_classes=10)
    plain = PathArch.from_strings(tiny, ["k3_e3", "k3_e3", "k5_e3"]).blocks()
    doubled = PathArch.from_strings(tiny, ["add(k3_e3,k3_e3)", "k3_e3", "k5_e3"]).blocks()
    assert doubled[1].op == "cell" and plain[1].op == "mbconv"
    assert block_macs(doubled[1]) == 2 * block_macs(plain[1])
    assert MacsPredictor().network_ms(doubled) > MacsPredictor().network_ms(plain)


def test_the_random_policy_resumes_its_draws() -> None:
    tiny = search_space(project(0).search, project(0).data, num_classes=10)
    arch = start_arch(tiny, "mobilenetv2")
    policy = RandomPolicy(seed=3)
    policy.sample(arch, 5)
    state = policy.checkpoint()
    ahead = [step.move for step in policy.sample(arch, 5)]
    resumed = RandomPolicy(seed=99)
    resumed.restore(state)
    assert [step.move for step in resumed.sample(arch, 5)] == ahead

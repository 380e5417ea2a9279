"""Which tasks the focus phase of a tuning run picks, and how much of the budget it keeps."""

from __future__ import annotations

from nasc.compiler.tuning_focus import (
    FIRST_ROUNDS,
    FOCUS_SHARE,
    TaskStanding,
    focus_budget,
    focus_tasks,
    potential_saving,
)


def _conv(index: int, flops: float, us: float | None, weight: int = 1) -> TaskStanding:
    return TaskStanding(index=index, name=f"fused_conv2d_nchwc{index}_add{index}_relu{index}", weight=weight,
                        flops=flops, best_secs=None if us is None else us * 1e-6)


def test_kind_drops_the_numbers_of_fused_task_names() -> None:
    assert _conv(17, 1.0, 1.0).kind == "fused_conv2d_nchwc_add_relu"
    assert TaskStanding(0, "max_pool2d2", 1, 1.0, 1.0).kind == "max_pool2d"
    assert TaskStanding(0, "fused_depthwise_conv2d_nchwc", 1, 1.0, 1.0).kind == "fused_depthwise_conv2d_nchwc"


def test_the_focus_budget_is_a_share_that_leaves_every_task_its_first_rounds() -> None:
    assert FIRST_ROUNDS == 2
    assert focus_budget(1536, 17, 30) == int(1536 * FOCUS_SHARE)  # squeezenet at 1536
    assert focus_budget(60, 25, 1) == 0  # a quarter is less than two rounds: all to the first phases
    assert focus_budget(60, 1, 20) == 15  # 3 per task: 45 left, the two first rounds take 40
    assert focus_budget(50, 1, 20) == 0  # 2.5 per task: a quarter would cut into the first rounds
    assert focus_budget(0, 1, 0) == 0


def test_tasks_furthest_behind_their_kinds_best_throughput_come_first() -> None:
    standings = [
        _conv(0, 173e6, 409.0),  # 423 GFLOP/s: 57 us behind
        _conv(1, 56e6, 114.0),  # 491 GFLOP/s: the best convolution, nothing to gain
        _conv(2, 11.1e6, 83.5),  # 133 GFLOP/s: 61 us behind
        _conv(3, 4.2e6, 35.7, weight=2),  # 118 GFLOP/s, used twice: 2 x 27 us behind
        _conv(4, 6.0e6, None),  # never measured: nothing known
        TaskStanding(5, "max_pool2d", 1, 1.7e6, 20e-6),  # its own kind: the best pool, nothing to gain
    ]
    picked = focus_tasks(standings, budget=4 * 25, round_size=25)  # room for two tasks at two rounds each
    assert picked == [2, 0]
    assert focus_tasks(standings, budget=1000, round_size=25) == [2, 0, 3]  # the others have nothing to gain
    best_rate = 56e6 / 114e-6
    rates = {"fused_conv2d_nchwc_add_relu": best_rate}
    assert potential_saving(standings[1], rates) == 0.0
    assert abs(potential_saving(standings[2], rates) - (83.5e-6 - 11.1e6 / best_rate)) < 1e-12


def test_no_task_with_anything_to_gain_picks_none() -> None:
    assert focus_tasks([_conv(0, 1e6, 10.0), _conv(1, 0.0, 5.0)], budget=100, round_size=25) == []


def test_data_movement_is_measured_in_bytes_and_a_slow_copy_gets_focus() -> None:
    def gather(index: int, mbytes: float, us: float) -> TaskStanding:
        return TaskStanding(index=index, name=f"gather_channels{index}", weight=1, flops=0.0,
                            best_secs=us * 1e-6, bytes_moved=mbytes * 1e6)

    standings = [
        gather(0, 2.0, 100.0),  # 20 GB/s: the best copy
        gather(1, 2.0, 448.0),  # the same bytes 4.5x slower: 348 us behind
        _conv(2, 173e6, 409.0),
        _conv(3, 56e6, 114.0),  # the best convolution
    ]
    assert standings[1].work == 2.0e6 and standings[2].work == 173e6
    assert focus_tasks(standings, budget=2 * 25, round_size=25) == [1]
    assert focus_tasks(standings, budget=1000, round_size=25) == [1, 2]
    # Without the bytes a copy has no throughput and nothing to gain:
    no_bytes = [TaskStanding(t.index, t.name, t.weight, t.flops, t.best_secs) for t in standings]
    assert focus_tasks(no_bytes, budget=1000, round_size=25) == [2]


def test_bytes_moved_sums_the_kernels_buffer_parameters() -> None:
    import tvm
    from tvm import te

    from nasc.compiler.tune import bytes_moved

    a = te.placeholder((2, 3, 4), "float32", name="a")
    b = te.compute((2, 3, 4), lambda *i: a(*i).astype("float16"), name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    assert bytes_moved(mod) == 24 * 4 + 24 * 2

"""lmbook.collectives: the ring all-reduce against dist.all_reduce, its schedule, and its bytes against the formula."""

import pytest
import torch

from lmbook.collectives import check_ring_all_reduce, plot_ring_schedule, ring_all_reduce_bytes, ring_schedule
from lmbook.launch import run_workers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = (0, 1, 2, 5, 999, 1000, 1001)


def ring_both_dtypes(sizes):
    """Worker: the ring against dist.all_reduce in float64 and in int64 (where both must agree exactly)."""
    return {dtype: check_ring_all_reduce(sizes, dtype=dtype) for dtype in ("float64", "int64")}


@pytest.mark.parametrize("world_size", [2, 3])
def test_ring_all_reduce_equals_dist_all_reduce_and_sends_the_formulas_bytes(world_size):
    per_rank = run_workers("tests.lib.test_collectives:ring_both_dtypes", nprocs=world_size, timeout=90, sizes=SIZES)
    assert len(per_rank) == world_size
    for dtype, tolerance in (("float64", 1e-12), ("int64", 0.0)):
        for i, n in enumerate(SIZES):
            rows = [result[dtype][i] for result in per_rank]
            assert all(row["n"] == n for row in rows)
            assert max(row["max_abs_diff"] for row in rows) <= tolerance, (dtype, n, rows)
            formula = ring_all_reduce_bytes(n * 8, world_size)
            sent = [row["bytes_sent"] for row in rows]
            # over all processes the count is exactly P times the formula; each process is exact when P divides n
            assert sum(sent) == pytest.approx(world_size * formula, abs=1e-9)
            if n % world_size == 0:
                assert sent == [formula] * world_size
            else:  # chunks differ by one element, so a process sends at most 2 (P - 1) elements more or fewer
                assert all(abs(s - formula) < 2 * (world_size - 1) * 8 for s in sent)


def _simulate(world_size: int, n: int, schedule) -> list[torch.Tensor]:
    """The ring run in one process: a list of P vectors, messages passed by the schedule."""
    generator = torch.Generator().manual_seed(0)
    data = [torch.randint(-9, 10, (n,), generator=generator) for _ in range(world_size)]
    expected = sum(data)
    for step in schedule:
        sent = [torch.tensor_split(data[r], world_size)[step["send"][r]].clone() for r in range(world_size)]
        for r in range(world_size):
            assert step["recv"][r] == step["send"][(r - 1) % world_size]  # what arrives is what the left sent
            incoming = torch.tensor_split(data[r], world_size)[step["recv"][r]]
            left = sent[(r - 1) % world_size]
            if step["phase"] == "reduce-scatter":
                incoming.add_(left)
            else:
                incoming.copy_(left)
    return data, expected


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
def test_the_schedule_leaves_every_rank_with_the_sum(world_size):
    schedule = ring_schedule(world_size)
    assert len(schedule) == 2 * (world_size - 1)
    data, expected = _simulate(world_size, 11, schedule)
    for r in range(world_size):
        torch.testing.assert_close(data[r], expected, rtol=0, atol=0)


def test_a_schedule_with_a_wrong_chunk_is_caught_by_the_simulation():
    schedule = ring_schedule(3)
    broken = [dict(step, send=list(step["send"]), recv=list(step["recv"])) for step in schedule]
    broken[2]["send"] = [(c + 1) % 3 for c in broken[2]["send"]]  # all-gather passes the wrong chunks
    broken[2]["recv"] = [(c + 1) % 3 for c in broken[2]["recv"]]
    data, expected = _simulate(3, 11, broken)
    assert any(not torch.equal(d, expected) for d in data)


def test_ring_bytes_formula():
    assert ring_all_reduce_bytes(1000, 1) == 0
    assert ring_all_reduce_bytes(1000, 2) == 1000
    assert ring_all_reduce_bytes(1200, 4) == 1800
    assert ring_all_reduce_bytes(1e9, 1024) < 2e9
    with pytest.raises(ValueError, match="world_size must be a whole number >= 1, got 0"):
        ring_all_reduce_bytes(10, 0)
    with pytest.raises(ValueError, match="n_bytes must not be negative"):
        ring_all_reduce_bytes(-1, 2)
    with pytest.raises(ValueError, match="world_size must be a whole number"):
        ring_schedule(2.0)


def test_plot_ring_schedule_writes_each_sent_chunk():
    import matplotlib.pyplot as plt

    ax = plot_ring_schedule(3)
    labels = [t.get_text() for t in ax.texts]
    assert labels == [str(step["send"][r]) for step in ring_schedule(3) for r in range(3)]
    plt.close(ax.figure)

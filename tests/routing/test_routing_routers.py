"""The router family: separable tasks route perfectly, k-NN ties follow the documented rule, state round-trips."""

from __future__ import annotations

import pytest
import torch

from mergeflow.errors import MergeflowError
from mergeflow.routing.routers import ROUTER_NAMES, Router, fit_router

TASKS = ("cars", "dtd")


def _two_gaussians(seed: int, n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.zeros(2, 16)
    centres[0, :8], centres[1, 8:] = 4.0, 4.0  # far apart in Euclidean and in angle
    return [centres[t] + torch.randn(n, 16, generator=generator) for t in range(2)]


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_well_separated_gaussians_route_perfectly(name: str) -> None:
    router = fit_router(name, TASKS, _two_gaussians(0, 64))
    fresh = _two_gaussians(1, 50)
    labels = torch.cat([torch.full((50,), t) for t in range(2)])
    assert torch.equal(router.route(torch.cat(fresh)), labels)
    scores = router.scores(fresh[0])
    assert scores.shape == (50, 2) and scores.dtype == torch.float64
    assert router.min_distance(fresh[0]).shape == (50,)


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_state_round_trip_gives_identical_scores(name: str) -> None:
    router = fit_router(name, TASKS, _two_gaussians(2, 12))
    again = Router.from_state(name, list(TASKS), router.state())
    x = torch.cat(_two_gaussians(3, 4))
    assert torch.equal(router.scores(x), again.scores(x))
    assert torch.equal(router.min_distance(x), again.min_distance(x))


def test_euclidean_routes_to_the_nearest_mean() -> None:
    features = [torch.randn(5, 3, generator=torch.Generator().manual_seed(t)) + t for t in range(4)]
    router = fit_router("euclidean", ["a", "b", "c", "d"], features)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(9)) * 2
    means = torch.stack([f.mean(dim=0) for f in features])
    assert torch.equal(router.route(x), torch.cdist(x, means).argmin(dim=1))


def test_cosine_is_one_minus_cosine_to_the_mean() -> None:
    features = _two_gaussians(4, 6)
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    means = torch.stack([f.mean(dim=0) for f in features])
    expected = 1 - torch.nn.functional.cosine_similarity(x.double()[:, None], means.double()[None], dim=-1)
    torch.testing.assert_close(fit_router("cosine", TASKS, features).scores(x), expected)


def test_knn1_routes_a_calibration_sample_to_its_own_task() -> None:
    features = [torch.randn(10, 8, generator=torch.Generator().manual_seed(t)) for t in range(3)]
    router = fit_router("knn1", ["a", "b", "c"], features)
    for t, f in enumerate(features):
        assert torch.equal(router.route(f), torch.full((10,), t))


def test_knn_vote_tie_goes_to_the_task_with_the_nearest_neighbour() -> None:
    """Query along +x. Neighbours (k=10 = all): task 0 has 5 near-ish, task 1 has 5 including the very nearest."""

    def at(degrees: list[float]) -> torch.Tensor:
        radians = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
        return torch.stack([radians.cos(), radians.sin()], dim=1)

    features = [at([10, 11, 12, 13, 14]), at([5, 60, 61, 62, 63])]
    router = fit_router("knn10", ["a", "b"], features)
    x = torch.tensor([[1.0, 0.0]])
    scores = router.scores(x)
    assert torch.equal(scores.floor(), torch.tensor([[-5.0, -5.0]], dtype=torch.float64))  # 5 votes each
    assert int(router.route(x)) == 1  # tie broken by the nearest neighbour (5 degrees, task b)
    knn3 = fit_router("knn3", ["a", "b"], features)
    assert int(knn3.route(x)) == 0  # majority beats the nearest neighbour: 2 votes (10, 11 deg) vs 1 (5 deg)
    torch.testing.assert_close(knn3.min_distance(x), 1 - at([5.0])[:, 0])


def test_knn_exact_tie_goes_to_the_lowest_task_index() -> None:
    same = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    router = fit_router("knn1", ["a", "b", "c"], [same + 5, same, same])
    assert torch.equal(router.route(torch.tensor([[1.0, 0.1]])), torch.tensor([1]))


def test_pooled_and_full_route_differently() -> None:
    """Task 0 is long along x, task 1 along y; pooled sees one round covariance and picks the nearer mean."""
    generator = torch.Generator().manual_seed(6)
    features = [
        torch.randn(400, 2, generator=generator) * torch.tensor([6.0, 0.3]),
        torch.randn(400, 2, generator=generator) * torch.tensor([0.3, 6.0]) + torch.tensor([5.0, 0.0]),
    ]
    x = torch.tensor([[4.0, 0.0]])  # 4 from mean 0 along its long axis, 1 from mean 1 across its short axis
    assert int(fit_router("mad", TASKS, features).route(x)) == 0
    assert int(fit_router("pooled", TASKS, features).route(x)) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_router("lda", TASKS, _two_gaussians(0, 4)), "known routers: mad, pooled"),
        (lambda: fit_router("knn10", TASKS, [torch.randn(4, 3), torch.randn(4, 3)]), "at least 10"),
        (lambda: fit_router("mad", TASKS, [torch.randn(4, 3)]), "one per task"),
        (lambda: fit_router("mad", ["a", "a"], _two_gaussians(0, 4)), "distinct"),
        (lambda: fit_router("mad", TASKS, _two_gaussians(0, 4)).route(torch.randn(2, 5)), r"\(B, 16\)"),
        (lambda: Router.from_state("mad", ["a"], fit_router("mad", TASKS, _two_gaussians(0, 4)).state()), "2 tasks"),
        (lambda: Router.from_state("cosine", TASKS, {}), "lacks"),
    ],
)
def test_errors(call: object, message: str) -> None:
    with pytest.raises(MergeflowError, match=message):
        call()  # type: ignore[operator]

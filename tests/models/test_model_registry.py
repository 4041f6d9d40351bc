"""The model registry: names, duplicates, entry-point plug-ins and `package.module:factory` specs."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models import (
    BUILTIN_MODELS,
    DuplicateModel,
    Model,
    ModelLoadError,
    ModelRegistry,
    UnknownModel,
    available_models,
    resolve,
)
from models.base import Task
from models.tasks import ForecastTask

# A plug-in module a model host would ship: it reuses the naive forecaster under its own name.
PLUGIN_SOURCE = textwrap.dedent(
    """
    from models.forecast_models import naive_factory

    CALLS = []

    def factory(task, device="cpu", **options):
        CALLS.append(options)
        return naive_factory(task, device)

    not_a_factory = 42
    """
)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path; modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("p2pnode_test_plugin"):
            del sys.modules[name]


def write_module(directory: Path, name: str, source: str = PLUGIN_SOURCE) -> None:
    (directory / f"{name}.py").write_text(source)


def write_distribution(directory: Path, name: str, entry_points: dict[str, str]) -> None:
    """Install a fake distribution the way pip would: a .dist-info folder on sys.path."""
    info = directory / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[p2pnode.models]\n{lines}\n")


def dummy_factory(task: Task, device: str = "cpu") -> Model:
    raise NotImplementedError


def other_factory(task: Task, device: str = "cpu") -> Model:
    raise NotImplementedError


def test_the_builtin_models_are_registered() -> None:
    assert set(BUILTIN_MODELS) <= set(available_models())
    assert set(BUILTIN_MODELS) == {
        "text-transformer",
        "text-bigram",
        "text-unigram",
        "text-uniform",
        "forecast-mlp",
        "forecast-naive",
    }


def test_registering_a_name_twice_raises_unless_it_is_the_same_factory() -> None:
    registry = ModelRegistry(entry_point_group=None)
    registry.register("dummy", dummy_factory)
    registry.register("dummy", dummy_factory)  # the same module imported twice: harmless
    with pytest.raises(DuplicateModel, match="'dummy' is already registered"):
        registry.register("dummy", other_factory)
    assert registry.get("dummy") is dummy_factory
    registry.unregister("dummy")
    registry.register("dummy", other_factory)
    assert registry.get("dummy") is other_factory


@pytest.mark.parametrize("bad_name", ["", " padded ", "pkg.mod:factory"])
def test_names_that_could_be_confused_with_specs_are_refused(bad_name: str) -> None:
    with pytest.raises(ValueError, match="model name"):
        ModelRegistry(entry_point_group=None).register(bad_name, dummy_factory)


def test_an_unknown_name_lists_the_known_ones() -> None:
    registry = ModelRegistry(entry_point_group=None)
    registry.register("b-model", dummy_factory)
    registry.register("a-model", other_factory)
    with pytest.raises(UnknownModel, match=r"unknown model 'c-model'; known models: a-model, b-model\."):
        registry.get("c-model")


def test_a_spec_loads_a_hosts_own_module(plugin_dir: Path, forecast_task: ForecastTask) -> None:
    write_module(plugin_dir, "p2pnode_test_plugin_a")
    registry = ModelRegistry(entry_point_group=None)
    factory = registry.resolve("p2pnode_test_plugin_a:factory")
    assert factory is sys.modules["p2pnode_test_plugin_a"].factory
    model = registry.create("p2pnode_test_plugin_a:factory", forecast_task)
    request, _ = forecast_task.make_challenge(0)
    assert model.answer(request) == {"forecast": [request["history"][-1]] * request["horizon"]}
    # Options reach the factory only when given, so `factory(task, device)` factories work too.
    registry.create("p2pnode_test_plugin_a:factory", forecast_task, options={"checkpoint": "x"})
    assert sys.modules["p2pnode_test_plugin_a"].CALLS == [{}, {"checkpoint": "x"}]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("p2pnode_test_plugin_b:", "is not of the form 'package.module:factory'"),
        (":factory", "is not of the form"),
        ("p2pnode_test_plugin_missing:factory", "cannot import 'p2pnode_test_plugin_missing'"),
        ("p2pnode_test_plugin_b:nothing", "has no attribute 'nothing'"),
        ("p2pnode_test_plugin_b:not_a_factory", "names a int, not a factory"),
        ("p2pnode_test_plugin_broken:factory", "cannot import 'p2pnode_test_plugin_broken': No module named"),
    ],
)
def test_a_bad_spec_says_what_failed(plugin_dir: Path, spec: str, message: str) -> None:
    write_module(plugin_dir, "p2pnode_test_plugin_b")
    write_module(
        plugin_dir, "p2pnode_test_plugin_broken", "import p2pnode_test_plugin_dependency_not_installed\n"
    )
    with pytest.raises(ModelLoadError, match=message):
        ModelRegistry(entry_point_group=None).resolve(spec)


def test_a_factory_returning_something_else_is_refused(forecast_task: ForecastTask) -> None:
    def liar(task: Task, device: str) -> Any:
        return {"not": "a model"}

    registry = ModelRegistry(entry_point_group=None)
    registry.register("liar", liar)
    with pytest.raises(ModelLoadError, match="returned a dict, not a models.Model"):
        registry.create("liar", forecast_task)


def test_entry_points_of_installed_distributions_are_discovered(
    plugin_dir: Path, forecast_task: ForecastTask
) -> None:
    write_module(plugin_dir, "p2pnode_test_plugin_c")
    write_distribution(plugin_dir, "p2pnode_test_plugin_dist", {"my-naive": "p2pnode_test_plugin_c:factory"})
    registry = ModelRegistry()
    assert "my-naive" in registry.names()
    # Discovery records the spec only; the module is imported when the name is first used.
    assert "p2pnode_test_plugin_c" not in sys.modules
    model = registry.create("my-naive", forecast_task)
    assert model.name == "forecast-naive"
    assert registry.load_entry_points() == []  # discovering again adds nothing and raises nothing


def test_a_broken_entry_point_fails_only_when_its_name_is_used(plugin_dir: Path) -> None:
    write_distribution(
        plugin_dir, "p2pnode_test_plugin_broken_dist", {"broken": "p2pnode_test_plugin_nowhere:factory"}
    )
    registry = ModelRegistry()
    registry.register("fine", dummy_factory)
    assert {"broken", "fine"} <= set(registry.names())
    assert registry.get("fine") is dummy_factory
    with pytest.raises(ModelLoadError, match="cannot import 'p2pnode_test_plugin_nowhere'"):
        registry.get("broken")


def test_an_entry_point_cannot_take_a_registered_name(plugin_dir: Path) -> None:
    write_distribution(
        plugin_dir, "p2pnode_test_plugin_squatter", {"text-bigram": "p2pnode_test_plugin_c:factory"}
    )
    registry = ModelRegistry()
    for name, spec in BUILTIN_MODELS.items():
        registry.register(name, spec)
    with pytest.raises(
        DuplicateModel, match=r"'text-bigram' is already registered .*p2pnode_test_plugin_squatter"
    ):
        registry.load_entry_points()


def test_the_docs_example_loads_from_its_spec(
    monkeypatch: pytest.MonkeyPatch, forecast_task: ForecastTask
) -> None:
    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    monkeypatch.syspath_prepend(str(examples))
    monkeypatch.delitem(sys.modules, "my_model", raising=False)
    model = resolve("my_model:factory")(forecast_task, "cpu")
    challenges = [forecast_task.make_challenge(seed) for seed in range(100)]
    responses = model.answer_batch([request for request, _ in challenges])
    scores = [
        forecast_task.score(r, resp, truth) for (r, truth), resp in zip(challenges, responses, strict=True)
    ]
    naive = [
        forecast_task.score(r, {"forecast": [r["history"][-1]] * r["horizon"]}, t) for r, t in challenges
    ]
    assert sum(scores) / len(scores) > sum(naive) / len(naive) + 0.05
    monkeypatch.delitem(sys.modules, "my_model")


def test_registered_factories_may_be_lazy_specs(plugin_dir: Path, forecast_task: ForecastTask) -> None:
    write_module(plugin_dir, "p2pnode_test_plugin_d")
    registry = ModelRegistry(entry_point_group=None)
    registry.register("lazy", "p2pnode_test_plugin_d:factory")
    assert "p2pnode_test_plugin_d" not in sys.modules
    first: Any = registry.get("lazy")
    assert registry.get("lazy") is first is sys.modules["p2pnode_test_plugin_d"].factory
    registry.register("lazy", "p2pnode_test_plugin_d:factory")  # same spec again: a no-op


def test_the_guide_shows_the_example_file_verbatim() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    example = (docs / "examples" / "my_model.py").read_text()
    assert f"```python\n{example}```" in (docs / "model-hosts.md").read_text()

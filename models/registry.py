"""Model names -> factories, with plug-ins from entry points and from ``package.module:factory`` specs.

Three ways for a model host to offer a model, none of which edits p2pnode:

1. ``register_model("my-model", factory)`` in code that runs before the node looks the name up;
2. an entry point in the host's own package metadata (found at the first lookup)::

       [project.entry-points."p2pnode.models"]
       my-model = "my_package.my_module:factory"

3. a spec naming the factory directly, e.g. ``p2pnode join --miner my_package.my_module:factory``:
   `resolve` imports the module (from ``sys.path``) and returns the attribute.

Built-in names: text-transformer, text-bigram, text-unigram, text-uniform, forecast-mlp,
forecast-naive. They are registered as lazy specs, so importing this module imports no torch and
trains nothing; the factory's module is imported at the first `get`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Mapping
from typing import Any, overload

from models.base import Model, ModelFactory, Task
from models.errors import DuplicateModel, ModelLoadError, UnknownModel

ENTRY_POINT_GROUP = "p2pnode.models"

BUILTIN_MODELS: Mapping[str, str] = {
    "text-transformer": "models.text_models:transformer_factory",
    "text-bigram": "models.text_models:bigram_factory",
    "text-unigram": "models.text_models:unigram_factory",
    "text-uniform": "models.text_models:uniform_factory",
    "forecast-mlp": "models.forecast_models:mlp_factory",
    "forecast-naive": "models.forecast_models:naive_factory",
}


def load_spec(spec: str) -> ModelFactory:
    """Import ``package.module:attribute`` (the attribute may be dotted) and return it, callable.

    Raises `ModelLoadError` saying which part failed: the syntax, the import (with the module's
    own error), the attribute, or that the object is not callable.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ModelLoadError(f"model spec {spec!r} is not of the form 'package.module:factory'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"model spec {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelLoadError(
                f"model spec {spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ModelLoadError(f"model spec {spec!r} names a {type(target).__name__}, not a factory")
    return target  # type: ignore[no-any-return]


class ModelRegistry:
    """Model name -> factory (or a lazy ``module:factory`` spec, imported at first use).

    Thread-safe: a miner may create models from worker threads.
    """

    def __init__(self, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        # What was registered (a callable or a spec string), and the callables specs resolved to.
        self._entries: dict[str, ModelFactory | str] = {}
        self._loaded: dict[str, ModelFactory] = {}
        self._lock = threading.RLock()
        self._entry_point_group = entry_point_group
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, factory: ModelFactory | str) -> None:
        """Register ``factory`` (a callable or a ``module:factory`` spec) under ``name``.

        Registering the very same factory again is a no-op (a module imported twice); any other
        second registration of a name raises `DuplicateModel`, so a plug-in can never silently
        replace a model someone else relies on.
        """
        if not isinstance(name, str) or not name or name != name.strip() or ":" in name:
            raise ValueError(
                f"model name must be a non-empty string without ':' or outer spaces, got {name!r}"
            )
        if not isinstance(factory, str) and not callable(factory):
            raise TypeError(f"factory for {name!r} must be callable or a 'module:factory' spec")
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                if existing is factory or existing == factory:
                    return
                raise DuplicateModel(
                    f"model name {name!r} is already registered (to {_describe(existing)}); pick another name"
                )
            self._entries[name] = factory

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests use this to clean up); unknown names raise `UnknownModel`."""
        with self._lock:
            if name not in self._entries:
                raise self._unknown(name)
            del self._entries[name]
            self._loaded.pop(name, None)

    def load_entry_points(self) -> list[str]:
        """Register every ``p2pnode.models`` entry point not yet registered; return the new names.

        Entry points are registered as lazy specs (``ep.value``), so a broken plug-in fails only
        when its own name is used, not at every start. A plug-in whose name collides with a
        different registered factory raises `DuplicateModel`, naming its distribution.
        """
        if self._entry_point_group is None:
            return []
        added: list[str] = []
        with self._lock:
            for entry_point in importlib.metadata.entry_points(group=self._entry_point_group):
                try:
                    before = entry_point.name in self._entries
                    self.register(entry_point.name, entry_point.value)
                except DuplicateModel as exc:
                    dist = (
                        entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"
                    )
                    raise DuplicateModel(f"{exc} (entry point from {dist})") from None
                if not before:
                    added.append(entry_point.name)
            self._entry_points_loaded = True
        return added

    def _ensure_entry_points(self) -> None:
        if not self._entry_points_loaded:
            self.load_entry_points()

    def names(self) -> list[str]:
        """Every registered name, sorted (entry points included)."""
        self._ensure_entry_points()
        with self._lock:
            return sorted(self._entries)

    def get(self, name: str) -> ModelFactory:
        """The factory registered under ``name``; `UnknownModel` lists the known names."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            self._ensure_entry_points()
            with self._lock:
                entry = self._entries.get(name)
        if entry is None:
            raise self._unknown(name)
        if not isinstance(entry, str):
            return entry
        with self._lock:
            cached = self._loaded.get(name)
        if cached is not None:
            return cached
        factory = load_spec(entry)
        with self._lock:
            if self._entries.get(name) == entry:
                self._loaded[name] = factory  # import once, then keep the callable
        return factory

    def resolve(self, spec: str) -> ModelFactory:
        """A factory from a registered name or from a ``package.module:factory`` spec."""
        if ":" in spec:
            return load_spec(spec)
        return self.get(spec)

    def create(
        self, spec: str, task: Task, device: str = "cpu", options: Mapping[str, Any] | None = None
    ) -> Model:
        """Resolve ``spec`` and call its factory: ``factory(task, device, **options)``.

        Options are passed only when given, so a factory written as ``factory(task, device)`` works.
        """
        factory = self.resolve(spec)
        model = factory(task, device, **options) if options else factory(task, device)
        if not isinstance(model, Model):
            raise ModelLoadError(f"factory {spec!r} returned a {type(model).__name__}, not a models.Model")
        if model.task is not task:
            raise ModelLoadError(f"factory {spec!r} returned a model bound to another task")
        return model

    def _unknown(self, name: str) -> UnknownModel:
        with self._lock:
            known = ", ".join(sorted(self._entries)) or "none"
        return UnknownModel(
            f"unknown model {name!r}; known models: {known}. "
            f"A model of your own can be named as 'package.module:factory'."
        )


def _describe(entry: ModelFactory | str) -> str:
    if isinstance(entry, str):
        return entry
    return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"


def _default_registry() -> ModelRegistry:
    registry = ModelRegistry()
    for name, spec in BUILTIN_MODELS.items():
        registry.register(name, spec)
    return registry


# The process-wide registry the node uses; tests build their own `ModelRegistry`.
default_registry = _default_registry()


@overload
def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]: ...
@overload
def register_model(name: str, factory: ModelFactory) -> ModelFactory: ...
def register_model(
    name: str, factory: ModelFactory | None = None
) -> ModelFactory | Callable[[ModelFactory], ModelFactory]:
    """Register a factory in the default registry; also usable as ``@register_model("name")``."""
    if factory is not None:
        default_registry.register(name, factory)
        return factory

    def decorator(function: ModelFactory) -> ModelFactory:
        default_registry.register(name, function)
        return function

    return decorator


def get_model_factory(name: str) -> ModelFactory:
    return default_registry.get(name)


def available_models() -> list[str]:
    return default_registry.names()


def resolve(spec: str) -> ModelFactory:
    """A factory from a registered name or a ``package.module:factory`` spec (default registry)."""
    return default_registry.resolve(spec)


def create_model(
    spec: str, task: Task, device: str = "cpu", options: Mapping[str, Any] | None = None
) -> Model:
    """Build a model from a name or spec with the default registry (see `ModelRegistry.create`)."""
    return default_registry.create(spec, task, device, options)

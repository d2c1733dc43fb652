"""One small registry (names -> factories), shared by sandboxes, executors, generators, proposers
and RACHEL's search strategies. Heavy entries name the module that registers them and are
imported on first use, so choosing one costs nothing until it is chosen."""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from evaluator.failures import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, *, lazy: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.lazy: dict[str, str] = dict(lazy or {})  # name -> module that registers it
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str):
        """Decorator: `@REGISTRY.register("name")` on a class or factory (which gets `.name`)."""
        def wrap(factory):
            self._factories[name] = factory
            try:
                factory.name = name
            except (AttributeError, TypeError):  # e.g. a bound method: the name stays on the registry
                pass
            return factory
        return wrap

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories and name in self.lazy:
            importlib.import_module(self.lazy[name])
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._factories[name]

    def make(self, name: str, **options) -> T:
        return self.get(name)(**options)

    def names(self) -> list[str]:
        """Everything that can be chosen, registered or not yet imported."""
        return sorted(set(self._factories) | set(self.lazy))

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self.lazy

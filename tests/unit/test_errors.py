"""The failure contract: every exception class the agent defines lives in ``agent.errors`` and
is either temporary (worth retrying) or fatal (not), so retries follow the class."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import agent
import strategies
from agent import errors
from agent.errors import AgentError, FatalError, TemporaryError


def _defined_exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (agent, strategies):
        for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(module_info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__.startswith(
                    ("agent.", "strategies.")
                ):
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_exception_class_lives_in_agent_errors() -> None:
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _defined_exception_classes()
        if cls.__module__ != errors.__name__
    )
    assert elsewhere == []


def test_every_error_is_temporary_or_fatal() -> None:
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    ]
    assert len(classes) > 20  # the walk found the hierarchy, not an empty module
    undecided = sorted(
        cls.__name__
        for cls in classes
        if cls not in (AgentError, TemporaryError, FatalError)
        and issubclass(cls, TemporaryError) == issubclass(cls, FatalError)
    )
    assert undecided == []

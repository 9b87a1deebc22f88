"""Every service of the product, found by walking the apps: the permission-matrix and
audit-coverage tests check each one, so code that moves or is added is never left out.

A service is a public function defined in a module named `services` anywhere under
`governance/`, `lifecycle/` or `audits/`, taking the acting user (`actor`).
"""

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any

APPS = ("governance", "lifecycle", "audits")


def service_modules() -> list[ModuleType]:
    modules = []
    for app in APPS:
        package = importlib.import_module(app)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{app}."):
            if info.name.rsplit(".", 1)[-1] == "services":
                modules.append(importlib.import_module(info.name))
    return modules


def all_services() -> dict[str, Callable[..., Any]]:
    """Name → function of every service (names are unique across the product)."""
    found: dict[str, Callable[..., Any]] = {}
    for module in service_modules():
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            if "actor" in inspect.signature(function).parameters:
                assert name not in found, f"two services are named {name}"
                found[name] = function
    return found


def service(name: str) -> Callable[..., Any]:
    return all_services()[name]

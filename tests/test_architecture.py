"""The walls of the package (DESIGN.md): what may import what.

Read from the source (every import, at module level or inside a function), so a
wall broken by a lazy import is caught too:

- the layers: service / CLI above domain above store; the store knows nothing of its
  callers, the domain nothing of HTTP, Prefect or mail;
- the Prefect components and the backends are clients: they never reach the store,
  the domain or the service;
- no import circle inside a folder.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "components" / "peopletasks"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(("peopletasks", *parts))
    return name.removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    """Module -> the modules it imports (absolute names)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found[module].update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                found[module].add(target)
                # `from peopletasks.domain import tasks` imports a module, not a name.
                for alias in node.names:
                    if (
                        (PACKAGE.parent / (target + "." + alias.name).replace(".", "/"))
                        .with_suffix(".py")
                        .exists()
                    ):
                        found[module].add(f"{target}.{alias.name}")
    return found


IMPORTS = _imports()


def _within(module: str, area: str) -> bool:
    return module == area or module.startswith(area + ".")


def _breaches(area: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if _within(module, area)
        for target in targets
        if any(_within(target, wall) for wall in forbidden)
    )


_OUR = "peopletasks."
WALLS = {
    # The store knows nothing of its callers.
    _OUR + "store": tuple(
        _OUR + name
        for name in ("domain", "service", "cli", "demo", "prefect", "backends", "mail", "webhooks")
    ),
    # The domain: every state change, and nothing of HTTP, Prefect or mail.
    _OUR + "domain": (
        *(_OUR + name for name in ("service", "cli", "demo", "prefect", "backends", "mail")),
        "fastapi",
        "starlette",
        "uvicorn",
        "httpx",
        "prefect",
        "aiosmtplib",
        "aiosmtpd",
        "email",
        "jinja2",
    ),
    # Clients: they reach task systems over HTTP, never the service's own parts.
    _OUR + "prefect": tuple(_OUR + name for name in ("store", "domain", "service")),
    _OUR + "backends": tuple(_OUR + name for name in ("store", "domain", "service", "prefect")),
}


def test_the_scan_sees_the_imports() -> None:
    """The walls below would pass vacuously if the scan found nothing."""
    assert _OUR + "store.tables" in IMPORTS[_OUR + "domain.tasks"]
    assert _OUR + "domain.tasks" in IMPORTS[_OUR + "service.routes"]


@pytest.mark.parametrize("area", sorted(WALLS))
def test_an_area_keeps_to_its_side_of_the_walls(area: str) -> None:
    assert _breaches(area, WALLS[area]) == []


def _folders() -> list[str]:
    return sorted(
        _module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("__init__.py")
    )


@pytest.mark.parametrize("folder", _folders())
def test_no_import_circle_inside_a_folder(folder: str) -> None:
    inside = {
        module
        for module in IMPORTS
        if module.rpartition(".")[0] == folder and not module.endswith(".__init__")
    }
    graph = {m: {t for t in IMPORTS[m] if t in inside and t != m} for m in inside}
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []

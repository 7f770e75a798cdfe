"""The layers of ARCHITECTURE.md, checked: which part of digestbot may import which.

Read from the source with ``ast`` (imports inside functions count too), so a shortcut taken
anywhere fails here, with the file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "digestbot"

# The layer of a module, by its path inside digestbot/.
LAYERS = {
    "core": "core", "store": "store", "services": "services", "channels": "channels", "render.py": "render",
    "bootstrap.py": "bootstrap", "cli": "cli", "cli.py": "cli", "runner.py": "runner", "web": "web",
}
# What each layer must never import (prefixes of module names).
FORBIDDEN = {
    "core": ("sqlalchemy", "alembic", "digestbot.store", "digestbot.services", "digestbot.channels",
             "digestbot.render", "digestbot.web", "digestbot.cli", "digestbot.runner", "digestbot.bootstrap",
             "digestbot.settings"),
    "store": ("digestbot.services", "digestbot.channels", "digestbot.render", "digestbot.web", "digestbot.cli",
              "digestbot.runner", "digestbot.bootstrap"),
    "render": ("sqlalchemy", "digestbot.store", "digestbot.services", "digestbot.web", "digestbot.cli",
               "digestbot.runner", "digestbot.bootstrap"),
    "channels": ("sqlalchemy", "digestbot.store", "digestbot.services", "digestbot.web", "digestbot.cli",
                 "digestbot.runner", "digestbot.bootstrap"),
    "services": ("sqlalchemy", "digestbot.web", "digestbot.cli", "digestbot.runner", "digestbot.bootstrap"),
    "bootstrap": ("digestbot.web", "digestbot.cli", "digestbot.runner"),
    # The entry points: the command line starts the others (`run`, `serve`); they never call back.
    "cli": ("sqlalchemy",),
    "runner": ("sqlalchemy", "digestbot.cli", "digestbot.web"),
    "web": ("sqlalchemy", "digestbot.cli", "digestbot.runner"),
}


def layer_of(relative: Path) -> str | None:
    """The layer of a module, from its path inside digestbot/."""
    return LAYERS.get(relative.parts[0])


def imports(source: str, relative: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a module's source, relative imports resolved."""
    package = ".".join(("digestbot", *relative.parent.parts))
    found = []
    for node in ast.walk(ast.parse(source, str(relative))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            # Each imported name under its module: "from digestbot import runner" is digestbot.runner.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(source: str, relative: Path) -> list[str]:
    forbidden = FORBIDDEN[layer_of(relative)]
    return [f"digestbot/{relative}:{line}: {module}" for line, module in imports(source, relative)
            if any(module == f or module.startswith(f + ".") for f in forbidden)]


MODULES = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if layer_of(p.relative_to(PACKAGE)))
OUTSIDE_THE_LAYERS = ("__init__.py", "__main__.py", "errors.py", "settings.py", "clock.py", "resources.py")


def test_every_module_has_a_layer() -> None:
    unplaced = [str(p) for p in PACKAGE.rglob("*.py")
                if layer_of(p.relative_to(PACKAGE)) is None and p.name not in OUTSIDE_THE_LAYERS]
    assert unplaced == []


@pytest.mark.parametrize("relative", MODULES, ids=str)
def test_the_module_imports_only_what_its_layer_may(relative: Path) -> None:
    assert violations((PACKAGE / relative).read_text(encoding="utf-8"), relative) == []


@pytest.mark.parametrize(("source", "relative"), [
    ("from sqlalchemy import select\n", "services/ingest.py"),
    ("def f():\n    from digestbot.store.models import Paper\n", "core/diff.py"),
    ("from ..web import app\n", "services/digests.py"),
    ("import digestbot.cli\n", "web/pages.py"),
])
def test_the_check_catches_a_shortcut(source: str, relative: str) -> None:
    """The check itself can fail: each of these breaks a rule."""
    assert len(violations(source, Path(relative))) == 1


def test_no_module_is_much_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert long == {}

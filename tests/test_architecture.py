"""ARCHITECTURE.md's import rules, checked on the source: the core stays free of Flask and of the client."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = ["backend", "jobs", "validation", "config", "profile_schema", "variants", "errors", "images", "webhooks", "faults", "rules",
        "journal", "openapi"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            names.add(node.module.split(".")[0])  # from ..client import x, inside a subpackage
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_web_framework(module):
    assert not imported_modules(REPO / "mockserver" / f"{module}.py") & {"flask", "werkzeug", "waitress", "client",
                                                                          "contracts"}


@pytest.mark.parametrize("path", sorted((REPO / "mockserver").rglob("*.py")), ids=lambda p: p.name)
def test_mockserver_does_not_import_client_or_contracts(path):
    assert not imported_modules(path) & {"client", "contracts"}


@pytest.mark.parametrize("path", sorted((REPO / "client").rglob("*.py")), ids=lambda p: p.name)
def test_client_does_not_import_mockserver_or_contracts(path):
    assert not imported_modules(path) & {"mockserver", "contracts", "flask"}


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((REPO / "contracts").glob("*.py")), ids=lambda p: p.name)
def test_contracts_reach_the_mock_only_to_start_it(path):
    """Contracts talk to every target through the client; only the plugin may start the embedded mock."""
    mock_imports = {name for name in imported_names(path) if name.split(".")[0] == "mockserver"}
    allowed = {"mockserver.testing"} | ({"mockserver.config", "mockserver.server"} if path.name == "plugin.py" else set())
    assert mock_imports <= allowed


def test_testing_helpers_speak_only_http():
    """``mockserver.testing`` drives any mock (in-process, subprocess, container) the same way: over HTTP."""
    assert not relative_imports(REPO / "mockserver" / "testing.py")
    assert not imported_modules(REPO / "mockserver" / "testing.py") & {"flask", "werkzeug", "waitress", "mockserver"}


def relative_imports(path: Path) -> set[str]:
    return {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}


@pytest.mark.parametrize("module", CORE)
def test_core_does_not_reach_up_into_http_or_serving(module):
    """The core returns models and raises errors; only the HTTP layer knows bodies' status codes."""
    assert not relative_imports(REPO / "mockserver" / f"{module}.py") & {"http", "server", "cli", "pytest_plugin",
                                                                          "testing"}

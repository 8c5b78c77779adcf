"""ARCHITECTURE.md's import rules, checked on the source: the core stays free of Flask and of the client."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sd35_twin"      # the one name an install puts on the import path (pyproject.toml)
OURS = {"mockserver", "client", "contracts", "bench"}
CORE = ["backend", "jobs", "validation", "config", "profile_schema", "variants", "coverage", "errors", "images", "webhooks", "faults", "rules",
        "journal", "openapi"]


def ours(name: str) -> str:
    """'sd35_twin.mockserver.testing' -> 'mockserver.testing': our folders by the names this file's rules use."""
    return name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else name


def absolute_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module == PACKAGE:
                names.extend(f"{PACKAGE}.{alias.name}" for alias in node.names)   # from sd35_twin import client
    return names


def imported_modules(path: Path) -> set[str]:
    names = {ours(name).split(".")[0] for name in absolute_imports(path)}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            names.add(node.module.split(".")[0])  # from ..client import x, inside a subpackage
    return names


PYTHON_FILES = sorted(p for folder in ("mockserver", "client", "contracts", "tests", "bench")
                      for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_imports_our_folders_by_their_short_names(path):
    """Installed, our folders are sd35_twin.*: a bare 'import client' would reach a user's own module of that name."""
    short = [name for name in absolute_imports(path) if name.split(".")[0] in OURS - {"bench"}]
    if path.parts[len(REPO.parts)] != "bench" and path.parts[len(REPO.parts)] != "tests":
        short += [name for name in absolute_imports(path) if name.split(".")[0] == "bench"]
    assert not short, f"{path.relative_to(REPO)} imports {short}: use {PACKAGE}.<name> or a relative import"


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
    return {ours(name) for name in absolute_imports(path)}


@pytest.mark.parametrize("path", sorted((REPO / "contracts").glob("*.py")), ids=lambda p: p.name)
def test_contracts_reach_the_mock_only_to_start_it(path):
    """Contracts talk to every target through the client; only the plugin may start the embedded mock."""
    mock_imports = {name for name in imported_names(path) if name.split(".")[0] == "mockserver"}
    allowed = {"mockserver.testing", "mockserver.evidence"} | (
        {"mockserver.config", "mockserver.server"} if path.name == "plugin.py" else set())
    assert mock_imports <= allowed


def test_evidence_is_shared_and_stands_alone():
    """How an exchange is read for a row lives in ``mockserver.evidence``, read by the proxy and by the contracts:
    standard library only, so the contracts can import it without the mock's internals."""
    path = REPO / "mockserver" / "evidence.py"
    assert not relative_imports(path)
    assert imported_modules(path) <= {"__future__", "hashlib", "json", "math", "threading", "time", "collections",
                                      "dataclasses", "pathlib", "typing", "urllib"}


def test_the_proxy_reads_exchanges_only_through_evidence():
    """The proxy is a serving module: the HTTP layer's bodies, the config, the shared evidence; no backend."""
    assert not relative_imports(REPO / "mockserver" / "proxy.py") & {"backend", "jobs", "validation", "testing"}


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

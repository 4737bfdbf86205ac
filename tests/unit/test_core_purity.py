"""Design principle 2: certpilot/core is pure: no module of it imports an I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import certpilot.core

FORBIDDEN = {"prefect", "sqlalchemy", "boto3", "botocore", "dns", "httpx", "requests", "socket", "subprocess",
             "ssl", "alembic", "psycopg", "acme", "os", "pathlib", "aiosmtpd", "urllib", "shutil", "io",
             "tempfile", "asyncio", "smtplib", "http"}
CORE = Path(certpilot.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            if node.args and isinstance(node.args[0], ast.Constant):
                roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_core_has_modules():
    assert {p.name for p in MODULES} >= {"names.py", "lifecycle.py", "status.py", "validity.py", "plans.py",
                                         "payment.py", "eligibility.py", "models.py", "errors.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path):
    bad = imported_roots(ast.parse(path.read_text(encoding="utf-8"))) & FORBIDDEN
    assert not bad, f"{path.name} imports {sorted(bad)}: core must stay pure (I/O belongs in adapters)"


def test_the_checker_sees_imports():
    tree = ast.parse("import os.path\nfrom socket import socket\nimport x as y\n__import__('ssl')\nfrom . import z\n")
    assert imported_roots(tree) == {"os", "socket", "x", "ssl"}

"""The layout's rules, from the code's own imports: core/ depends on nothing of ours; the local tools are imported
by nothing but the CLI entry point; imports sit at the top of their modules, but for the few that keep heavy
libraries out of Lambda cold starts and CLI start-up."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT
from tools.lambda_package import FUNCTION_PACKAGES, imported_modules

FIRST_PARTY = (*FUNCTION_PACKAGES, "tools")
#: The most imports that may sit inside a function outside tools/ (each says why it is there).
MAX_IMPORTS_IN_FUNCTIONS = 12


def _modules(package: str) -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((ROOT / package).rglob("*.py"))}


def _first_party_imports(module: str, path: Path) -> set[str]:
    return {name for name in imported_modules(path, module) if name.split(".")[0] in FIRST_PARTY}


def test_core_imports_none_of_the_other_packages() -> None:
    for module, path in _modules("core").items():
        outside = {name for name in _first_party_imports(module, path) if name.split(".")[0] != "core"}
        assert not outside, f"{module} imports {sorted(outside)}"


def test_only_the_cli_entry_point_imports_the_tools() -> None:
    for package in FUNCTION_PACKAGES:
        for module, path in _modules(package).items():
            tools = {name for name in _first_party_imports(module, path) if name.split(".")[0] == "tools"}
            if module == "detection.__main__":
                assert tools == {"tools.detection_cli", "tools.detection_cli.main"}
                continue
            assert not tools, f"{module} imports {sorted(tools)}: the tools are in no function"


def imports_in_functions(packages: tuple[str, ...]) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.extend(f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(function)
                                 if isinstance(node, ast.Import | ast.ImportFrom))
    return found


def test_imports_sit_at_the_top_of_their_modules_but_for_a_few() -> None:
    inside = imports_in_functions(FUNCTION_PACKAGES)
    assert len(inside) <= MAX_IMPORTS_IN_FUNCTIONS, "\n".join(inside)

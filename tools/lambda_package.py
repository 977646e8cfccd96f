"""Build one Lambda function's code: the first-party modules its handler imports, and nothing else.

    python -m tools.lambda_package LOGICAL_ID ARTIFACTS_DIR

``make build-<LogicalId>`` runs it (sam build, BuildMethod makefile). The handler is read from template.yaml; its
module and every first-party module it imports, directly or not (imports inside functions too: they may run), are
copied with the ``__init__.py`` of each package on the way and the package data pyproject.toml declares for those
packages (the features SQL). Third-party packages come from the layers. Runs on the build machine's python3 with
the standard library alone.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
#: The packages a function may carry; tools/ is never one of them.
FUNCTION_PACKAGES = ("core", "edge", "detection", "revocation", "rotation")


class PackagingError(RuntimeError):
    pass


def handler_of(logical_id: str, template: str) -> str:
    """The ``Handler`` of the function resource ``logical_id`` in template.yaml's text."""
    block = re.search(rf"^  {re.escape(logical_id)}:\n(?P<body>(?:(?:    .*|\s*)\n)+)", template, re.MULTILINE)
    handler = block and re.search(r"^      Handler: *(?P<handler>[\w.]+) *$", block["body"], re.MULTILINE)
    if not handler:
        raise PackagingError(f"template.yaml has no function {logical_id} with a Handler")
    return handler["handler"]


def module_file(module: str) -> Path | None:
    """The source file of a first-party module (a package's ``__init__.py``), or None for anything else."""
    if module.split(".")[0] not in FUNCTION_PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: Path, module: str) -> set[str]:
    """Every module ``source`` names in an import statement, anywhere in it; ``from a import b`` names ``a`` and,
    when ``b`` is a module of package ``a``, ``a.b`` too."""
    names: set[str] = set()
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def closure(module: str) -> dict[str, Path]:
    """``module`` and the first-party modules it imports, with the packages that hold them; an import of the
    local tools is an error."""
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        if name.split(".")[0] == "tools":
            raise PackagingError(f"{module} imports {name}: the local tools are in no function")
        path = module_file(name)
        if path is None:
            if name == module:
                raise PackagingError(f"no first-party module {module}")
            continue
        found[name] = path
        pending.extend(imported_modules(path, name))
        parent = name.rpartition(".")[0]
        if parent:
            pending.append(parent)
    return found


def package_data(packages: set[str]) -> list[Path]:
    """The data files pyproject.toml declares for these packages."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = declared.get("tool", {}).get("setuptools", {}).get("package-data", {})
    files: list[Path] = []
    for package, globs in patterns.items():
        if package in packages:
            for pattern in globs:
                files.extend(p for p in ROOT.joinpath(*package.split(".")).glob(pattern) if p.is_file())
    return files


def build(logical_id: str, artifacts: Path) -> list[Path]:
    """Copy the function's code into ``artifacts``; returns the files copied, relative to it."""
    handler = handler_of(logical_id, TEMPLATE.read_text(encoding="utf-8"))
    modules = closure(handler.rpartition(".")[0])
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    copied = []
    for source in sorted({*modules.values(), *package_data(packages)}):
        relative = source.relative_to(ROOT)
        (artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, artifacts / relative)
        copied.append(relative)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tools.lambda_package LOGICAL_ID ARTIFACTS_DIR", file=sys.stderr)
        return 2
    try:
        copied = build(argv[0], Path(argv[1]))
    except PackagingError as exc:
        print(f"lambda_package: {exc}", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {len(copied)} files into {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What `sam build` puts in each Lambda function: the repository's three packages (Makefile, BuildMethod makefile),
their third-party packages from layers (the lambda-layer group of uv.lock, and the AWS SDK for pandas layer for the
workflow),
and nothing that only the local tools use (DuckDB, the demo's report libraries, the test tools)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT
from tests.infra.helpers import RES, TPL, make_build
from tools import lambda_package
from tools.lambda_package import FUNCTION_PACKAGES

#: Only the AWS SDK for pandas layer has these.
PANDAS_LAYER = ["pandas", "numpy", "pyarrow"]

FUNCTIONS = {name: r for name, r in RES.items() if r["Type"] == "AWS::Serverless::Function"}


def _uses_pandas_layer(resource: dict) -> bool:
    return {"Ref": "PandasLayerArn"} in resource["Properties"].get("Layers", [])


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_layer_group_names_project_dependencies_without_versions() -> None:
    """The layer's packages are named once (pyproject's lambda-layer group) and versioned once (uv.lock)."""
    project = _pyproject()
    group = [Requirement(r) for r in project["dependency-groups"]["lambda-layer"]]
    assert all(not r.specifier for r in group), "versions come from uv.lock, not from the group"
    dependencies = [Requirement(r) for r in project["project"]["dependencies"]]
    provided = {canonicalize_name(r.name) for r in dependencies}
    # awscrt is botocore's crt extra, which the project asks for
    assert any(r.name == "botocore" and "crt" in r.extras for r in dependencies)
    assert {canonicalize_name(r.name) for r in group} <= provided | {"awscrt"}
    assert not _names(project["dependency-groups"]["lambda-layer"]) & {"duckdb", *PANDAS_LAYER, "boto3", "botocore"}


def test_the_layer_installs_the_locked_versions_with_hashes_and_leaves_the_sdk_to_the_runtime() -> None:
    exported = subprocess.run(
        ["make", "--silent", "-n", "build-DependenciesLayer", "ARTIFACTS_DIR=/nonexistent"], cwd=ROOT,
        capture_output=True, text=True, check=True,
    ).stdout
    assert "--frozen" in exported and "--only-group lambda-layer" in exported and "--require-hashes" in exported
    for package in ("boto3", "botocore", "s3transfer", "urllib3"):
        assert f"--no-emit-package {package}" in exported
    assert "--python-platform aarch64-manylinux2014" in exported and "--python-version 3.12" in exported


def test_every_function_is_built_from_the_makefile_with_the_shared_layer() -> None:
    assert TPL["Globals"]["Function"]["Layers"] == [{"Ref": "DependenciesLayer"}]
    layer = RES["DependenciesLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["ContentUri"] == "."  # the repository's Makefile, which reads uv.lock
    assert layer["Properties"]["CompatibleArchitectures"] == TPL["Globals"]["Function"]["Architectures"]
    assert layer["Properties"]["CompatibleRuntimes"] == [TPL["Globals"]["Function"]["Runtime"]]
    for name, resource in FUNCTIONS.items():
        assert resource.get("Metadata") == {"BuildMethod": "makefile"}, name
        assert resource["Properties"]["CodeUri"] == ".", name
        dry = subprocess.run(["make", "-n", f"build-{name}", "ARTIFACTS_DIR=/nonexistent"], cwd=ROOT,
                             capture_output=True, text=True)
        assert dry.returncode == 0, f"the Makefile has no build-{name}: {dry.stderr}"


def test_only_the_functions_that_score_take_the_pandas_layer() -> None:
    """The workflow's five and the stream consumer (the policy's rules run on Arrow tables)."""
    users = {name for name, resource in FUNCTIONS.items() if _uses_pandas_layer(resource)}
    scoring = {name for name, r in FUNCTIONS.items()
               if r["Properties"]["Handler"].startswith(("detection.workflow.handlers.", "detection.stream."))}
    assert users == scoring and len(scoring) == 6
    assert TPL["Parameters"]["PandasLayerArn"]["AllowedPattern"].startswith("^arn:aws")
    assert "Default" not in TPL["Parameters"]["PandasLayerArn"]  # no guessed version: sam deploy --guided asks


def assert_only_its_code(artifacts: Path, handler: str) -> None:
    """The handler's module is there, no local tool is, and nothing but first-party packages."""
    module = artifacts.joinpath(*handler.split(".")[:-1]).with_suffix(".py")
    assert module.is_file(), module
    assert {p.name for p in artifacts.iterdir()} <= set(FUNCTION_PACKAGES), handler
    assert not (artifacts / "tools").exists() and not list(artifacts.rglob("__pycache__"))
    assert not list(artifacts.rglob("demo.py")) and not list(artifacts.rglob("*.j2")), handler
    if (artifacts / "detection" / "scoring" / "query.py").exists():  # package data travels with its package
        assert (artifacts / "detection" / "scoring" / "sql" / "features.sql").is_file()


def test_each_function_is_built_with_the_modules_its_handler_imports_and_no_tool(tmp_path: Path) -> None:
    """`make build-<Function>`; tests/infra/integration/test_lambda_runtime.py runs each build under a Lambda-like runtime."""
    for name, resource in FUNCTIONS.items():
        artifacts = tmp_path / name
        assert_only_its_code(make_build(f"build-{name}", artifacts), resource["Properties"]["Handler"])
    issuer = {p.relative_to(tmp_path / "TokenIssuerFunction").as_posix()
              for p in (tmp_path / "TokenIssuerFunction").rglob("*.py")}
    assert "edge/issuer_handler.py" in issuer and not any(p.startswith("detection/") for p in issuer)
    # the ledger (to record each token's expiry), and nothing else of revocation/
    assert {p for p in issuer if p.startswith("revocation/")} == {
        "revocation/__init__.py", "revocation/ledger/__init__.py", "revocation/ledger/base.py",
        "revocation/ledger/dynamodb.py", "revocation/ledger/sqlite.py"}


def test_a_handler_that_imports_a_tool_cannot_be_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = tmp_path / "core" / "uses_a_tool.py"
    module.parent.mkdir()
    module.write_text("import json\n\ndef handler(event, context):\n    from tools import demo\n", encoding="utf-8")
    (tmp_path / "core" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.setattr(lambda_package, "ROOT", tmp_path)
    with pytest.raises(lambda_package.PackagingError, match="tools"):
        lambda_package.closure("core.uses_a_tool")
    assert set(lambda_package.closure("core")) == {"core"}


AARCH64 = 0xB7  # ELF e_machine


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[5] == 1, path  # little-endian ELF
    return int.from_bytes(header[18:20], "little")


@pytest.mark.slow
def test_sam_build_makes_arm64_layers_and_small_functions(tmp_path: Path) -> None:
    """The real `sam build` (scripts/sam.sh, SAM CLI in .venv-sam; uv reaches the package registry for the layer)."""
    build_dir = tmp_path / "build"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "sam.sh"), "build", "--build-dir", str(build_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in FUNCTIONS:
        assert_only_its_code(build_dir / name, FUNCTIONS[name]["Properties"]["Handler"])
        size = sum(p.stat().st_size for p in (build_dir / name).rglob("*") if p.is_file())
        assert size < 5 * 2**20, f"{name}: {size} bytes: more than the three packages?"
    layer = build_dir / "DependenciesLayer" / "python"
    for package in ("aws_lambda_powertools", "pydantic_settings", "jwt", "sqlglot", "aws_xray_sdk", "awscrt"):
        assert (layer / package).is_dir(), package
    extensions = list(layer.rglob("*.so"))
    assert extensions and all(_elf_machine(p) == AARCH64 for p in extensions), extensions
    assert (layer / "_awscrt.abi3.so") in extensions  # SigV4A for the KeyValueStore
    assert any(p.name.startswith("_pydantic_core.cpython-312-") for p in extensions)
    assert not (layer / "botocore").exists() and not (layer / "boto3").exists()  # the runtime's own
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    assert size < 100 * 2**20, size

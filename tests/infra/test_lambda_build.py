"""What `sam build` puts in each Lambda function: the repository's three packages (Makefile, BuildMethod makefile),
their third-party packages from layers (the lambda-layer group of uv.lock, and the AWS SDK for pandas layer for the
workflow),
and nothing that only the local tools use (DuckDB, the demo's report libraries, the test tools)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.test_template_pipeline import RES, ROOT, TPL

PACKAGES = {"edge", "detection", "rotation"}
#: Installed here for the local engine, the demo and the tests; in no layer, so no handler may import them.
NOT_IN_LAMBDA = ["duckdb", "matplotlib", "jinja2", "moto", "pytest", "hypothesis", "cfnlint", "samtranslator"]
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


def test_only_the_workflow_functions_take_the_pandas_layer() -> None:
    users = {name for name, resource in FUNCTIONS.items() if _uses_pandas_layer(resource)}
    workflow = {name for name, r in FUNCTIONS.items() if r["Properties"]["Handler"].startswith("detection.workflow_")}
    assert users == workflow and len(workflow) == 5
    assert TPL["Parameters"]["PandasLayerArn"]["AllowedPattern"].startswith("^arn:aws")
    assert "Default" not in TPL["Parameters"]["PandasLayerArn"]  # no guessed version: sam deploy --guided asks


_IMPORT_HANDLER = """
import importlib, sys
denied = set(sys.argv[3].split(","))

class NotInTheLambdaPackage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in denied:
            raise ImportError(f"{name} is in neither the function's package nor its layers")

sys.meta_path.insert(0, NotInTheLambdaPackage())
sys.path.insert(0, sys.argv[1])
module_name, attribute = sys.argv[2].rsplit(".", 1)
module = importlib.import_module(module_name)
assert callable(getattr(module, attribute)), sys.argv[2]
print(module.__file__)
"""


@pytest.mark.slow
def test_each_handler_imports_from_its_built_package_alone(tmp_path: Path) -> None:
    """`make build-<Function>` output, imported as Lambda would (the package dir first on sys.path), with every
    module that no layer provides made unimportable."""
    for name, resource in FUNCTIONS.items():
        artifacts = tmp_path / name
        built = subprocess.run(["make", "--silent", f"build-{name}", f"ARTIFACTS_DIR={artifacts}"], cwd=ROOT,
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        assert {p.name for p in artifacts.iterdir()} == PACKAGES, name
        assert not list(artifacts.rglob("__pycache__"))
        assert (artifacts / "detection" / "sql" / "features.sql").is_file()  # package data travels along
        denied = NOT_IN_LAMBDA + ([] if _uses_pandas_layer(resource) else PANDAS_LAYER)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        handler = resource["Properties"]["Handler"]
        imported = subprocess.run([sys.executable, "-c", _IMPORT_HANDLER, str(artifacts), handler, ",".join(denied)],
                                  cwd=tmp_path, env=env, capture_output=True, text=True)
        assert imported.returncode == 0, f"{name} ({handler}): {imported.stderr[-2000:]}"
        assert imported.stdout.strip().startswith(str(artifacts)), imported.stdout


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
        assert {p.name for p in (build_dir / name).iterdir()} == PACKAGES, name
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

"""What `sam build` puts in each Lambda function: the repository's three packages (Makefile, BuildMethod makefile),
their third-party packages from layers (layers/dependencies/, and the AWS SDK for pandas layer for the workflow),
and nothing that only the local tools use (DuckDB, the demo's report libraries, the test tools)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.infra.test_template_pipeline import RES, ROOT, TPL

LAYER = ROOT / "layers" / "dependencies"
PACKAGES = {"edge", "detection", "rotation"}
#: Installed here for the local engine, the demo and the tests; in no layer, so no handler may import them.
NOT_IN_LAMBDA = ["duckdb", "matplotlib", "jinja2", "moto", "pytest", "hypothesis", "cfnlint", "samtranslator"]
#: Only the AWS SDK for pandas layer has these.
PANDAS_LAYER = ["pandas", "numpy", "pyarrow"]

FUNCTIONS = {name: r for name, r in RES.items() if r["Type"] == "AWS::Serverless::Function"}


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in parsed}


def _layer_requirements() -> dict[str, Requirement]:
    text = (LAYER / "requirements.txt").read_text(encoding="utf-8")
    return _requirements([line for line in text.splitlines() if line.strip() and not line.startswith("#")])


def _uses_pandas_layer(resource: dict) -> bool:
    return {"Ref": "PandasLayerArn"} in resource["Properties"].get("Layers", [])


def test_layer_requirements_are_the_projects_with_the_same_ranges() -> None:
    project = _requirements(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                            ["dependencies"])
    layer = _layer_requirements()
    assert {"aws-lambda-powertools", "pydantic-settings", "pyjwt", "sqlglot"} <= set(layer)
    for name, requirement in layer.items():
        assert name in project, f"{name} is in the layer but not a dependency in pyproject.toml"
        assert requirement.specifier == project[name].specifier, name
        assert requirement.extras == project[name].extras, name
    # too big for a layer of ours (over Lambda's 250 MB with the rest); they come from the AWS SDK for pandas layer
    assert not set(PANDAS_LAYER) & set(layer)
    assert "duckdb" not in layer


def test_every_function_is_built_from_the_makefile_with_the_shared_layer() -> None:
    assert TPL["Globals"]["Function"]["Layers"] == [{"Ref": "DependenciesLayer"}]
    layer = RES["DependenciesLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleArchitectures"] == TPL["Globals"]["Function"]["Architectures"]
    assert layer["Properties"]["CompatibleRuntimes"] == [TPL["Globals"]["Function"]["Runtime"]]
    for name, resource in FUNCTIONS.items():
        assert resource.get("Metadata") == {"BuildMethod": "makefile"}, name
        assert resource["Properties"]["CodeUri"] == ".", name
        dry = subprocess.run(["make", "-n", f"build-{name}", "ARTIFACTS_DIR=/nonexistent"], cwd=ROOT,
                             capture_output=True, text=True)
        assert dry.returncode == 0, f"the Makefile has no build-{name}: {dry.stderr}"
    dry = subprocess.run(["make", "-n", "build-DependenciesLayer", "ARTIFACTS_DIR=/nonexistent"], cwd=LAYER,
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "--platform manylinux2014_aarch64" in dry.stdout and "--python-version 3.12" in dry.stdout


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


@pytest.mark.slow
def test_sam_build_makes_arm64_layers_and_small_functions(tmp_path: Path) -> None:
    """The real `sam build` (scripts/sam.sh, SAM CLI in .venv-sam; pip reaches the package registry for the layer)."""
    build_dir = tmp_path / "build"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "sam.sh"), "build", "--build-dir", str(build_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in FUNCTIONS:
        assert {p.name for p in (build_dir / name).iterdir()} == PACKAGES, name
        size = sum(p.stat().st_size for p in (build_dir / name).rglob("*") if p.is_file())
        assert size < 5 * 2**20, f"{name}: {size} bytes: more than the three packages?"
    layer = build_dir / "DependenciesLayer" / "python"
    for package in ("aws_lambda_powertools", "pydantic_settings", "jwt", "sqlglot", "aws_xray_sdk"):
        assert (layer / package).is_dir(), package
    extensions = list(layer.rglob("*.so"))
    assert extensions and all("aarch64" in p.name for p in extensions), extensions
    assert any(p.name.startswith("_pydantic_core.cpython-312-") for p in extensions)
    assert not (layer / "botocore").exists() and not (layer / "boto3").exists()  # the runtime's own
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    assert size < 100 * 2**20, size

"""What the infrastructure tests share: template.yaml parsed as SAM reads it, what its functions may call, and the
repository's uv (`make uv` installs the version the Makefile pins into .venv-uv; it never downloads a Python)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from tests.helpers import ROOT
from tools.template_schema import TEMPLATE

TEXT = TEMPLATE.read_text(encoding="utf-8")
TPL: dict[str, Any] = yaml_parse(TEXT)
RES: dict[str, Any] = TPL["Resources"]
PSEUDO = {"AWS::AccountId", "AWS::Region", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix", "AWS::StackId",
          "AWS::NoValue"}


def props(name: str) -> dict[str, Any]:
    return RES[name]["Properties"]


def globals_env() -> dict[str, str]:
    return TPL["Globals"]["Function"]["Environment"]["Variables"]



def client_calls(path: str) -> set[str]:
    """IAM action names of the boto3 calls an adapter makes (``self.client.put_item`` -> ``PutItem``)."""
    source = (ROOT / path).read_text(encoding="utf-8")
    names = set(re.findall(r"self\.client\.([a-z_]+)\b", source))
    names |= set(re.findall(r"get_paginator\(\"([a-z_]+)\"\)", source))
    names -= {"get_paginator", "get_waiter", "meta", "exceptions"}
    calls = {"".join(part.capitalize() for part in name.split("_")) for name in names}
    if "TransactWriteItems" in calls:  # IAM authorises a transaction item by item; the ledger's has a condition check
        calls = (calls - {"TransactWriteItems"}) | {"ConditionCheckItem"}
    return calls


def when_on(value: Any) -> Any:
    """A template value as it is when its condition holds (``Fn::If``'s first branch), else the value itself."""
    return value["Fn::If"][1] if isinstance(value, dict) and "Fn::If" in value else value


def actions(function: str, service: str) -> tuple[set[str], list[Any]]:
    statements = [s for p in props(function)["Policies"] for s in when_on(p)["Statement"]]
    found = [s for s in statements if all(a.startswith(service + ":") for a in s["Action"])]
    (statement,) = found
    return {a.split(":", 1)[1] for a in statement["Action"]}, statement["Resource"]


UV = ROOT / ".venv-uv" / "bin" / "uv"


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs ``uv --no-config ARGS`` in ``cwd``; its exit code is the caller's to judge."""
    if not UV.exists():
        subprocess.run(["make", "--silent", "uv"], cwd=ROOT, check=True)
    return subprocess.run([str(UV), "--no-config", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})


def make_build(target: str, artifacts: Path, **variables: str) -> Path:
    """``make <target> ARTIFACTS_DIR=<artifacts>`` (what sam build runs), with ``variables`` set; asserts it worked."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    built = subprocess.run(["make", "--silent", target, f"ARTIFACTS_DIR={artifacts}", *settings], cwd=ROOT,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return artifacts

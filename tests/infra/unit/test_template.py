"""template.yaml: lint-clean, and its CloudFront Function code is exactly edge/viewer_request.js."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from tools.template_inline import SOURCE, TEMPLATE, inline


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsic tags (!Ref, !Sub, ...) become plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def test_function_code_is_the_edge_source() -> None:
    function = load_template()["Resources"]["ViewerRequestFunction"]["Properties"]
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert function["FunctionCode"].rstrip("\n") == SOURCE.read_text(encoding="utf-8").rstrip("\n")


def test_inline_replaces_only_the_code_block() -> None:
    template = "A:\n  FunctionCode: |\n    old\n\n    code\n  Next: 1\n"
    assert inline(template, "new();\n\nmore();\n") == "A:\n  FunctionCode: |\n    new();\n\n    more();\n  Next: 1\n"
    with pytest.raises(ValueError, match="exactly one"):
        inline("A: 1\n", "x")


def test_inline_check_mode_agrees() -> None:
    result = subprocess.run([sys.executable, "-m", "tools.template_inline", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cfn_lint_is_clean() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

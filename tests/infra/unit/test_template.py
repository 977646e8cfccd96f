"""template.yaml: lint-clean, and its CloudFront Function code is exactly edge/viewer_request.js."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from tests.infra.helpers import TPL
from tools.template_inline import FAULT_LINE, FAULT_PARAMETER, SOURCE, TEMPLATE, inline, render


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsic tags (!Ref, !Sub, ...) become plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def test_function_code_is_the_edge_source_with_the_fault_policy_from_the_stack() -> None:
    function = TPL["Resources"]["ViewerRequestFunction"]["Properties"]
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    code = function["FunctionCode"]["Fn::Sub"]
    assert code.count(FAULT_PARAMETER) == 1
    assert code.replace(FAULT_PARAMETER, FAULT_LINE).rstrip("\n") == SOURCE.read_text(encoding="utf-8").rstrip("\n")
    assert "${" not in code.replace(FAULT_PARAMETER, "")  # nothing else for !Sub to touch
    parameter = TPL["Parameters"]["RevocationReadFault"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("allow", ["allow", "deny"])


def test_inline_replaces_only_the_code_block() -> None:
    template = "A:\n  FunctionCode: |\n    old\n\n    code\n  Next: 1\n"
    assert inline(template, "new();\n\nmore();\n") == "A:\n  FunctionCode: !Sub |\n    new();\n\n    more();\n  Next: 1\n"
    with pytest.raises(ValueError, match="exactly one"):
        inline("A: 1\n", "x")
    with pytest.raises(ValueError, match="exactly once"):
        render("const x = 1;")
    with pytest.raises(ValueError, match="must not hold"):
        render(FAULT_LINE + " const y = `${x}`;")


def test_inline_check_mode_agrees() -> None:
    result = subprocess.run([sys.executable, "-m", "tools.template_inline", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cfn_lint_is_clean() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

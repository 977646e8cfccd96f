"""docs/deploy.md against template.yaml: the "Parameters" table is generated from the template's parameters
(python -m tools.template_parameters), so a parameter added, removed or redescribed in the template without
`make template` fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.template_inline import ROOT, TEMPLATE
from tools.template_parameters import DOC, main, parameter_table, parameters, render

TEXT = TEMPLATE.read_text(encoding="utf-8")
DOC_TEXT = DOC.read_text(encoding="utf-8")
BEGIN = "<!-- BEGIN generated: parameters (python -m tools.template_parameters) -->\n"
END = "<!-- END generated: parameters -->\n"
SMALL_DOC = f"# Deploying\n\n## Parameters\n\n{BEGIN}| stale |\n{END}\nAfter the table.\n"
SMALL_TEMPLATE = """\
Parameters:
  Alpha:
    Type: Number
    Default: 5
    MinValue: 1
    MaxValue: 9
    Description: >
      First line of a folded
      description, with a | pipe and an arn:aws:lambda:<region>:1:layer:x placeholder.
  Beta:
    Type: String
    Default: ""
    AllowedValues: ["", "on"]
    Description: Empty by default.
  Gamma:
    Type: String
    Description: No default.
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${AWS::StackName}-${Alpha}"
"""


def doc_rows(doc: str) -> dict[str, str]:
    """Parameter name -> its table row, from the generated block of a document."""
    block = doc[doc.index(BEGIN) + len(BEGIN) : doc.index(END)]
    rows = {}
    for line in block.splitlines():
        match = re.match(r"^\| `(?P<name>[A-Za-z0-9]+)` \|", line)
        if match:
            rows[match.group("name")] = line
    return rows


def test_check_passes_on_the_repository() -> None:
    assert render(DOC_TEXT, TEXT) == DOC_TEXT, "run: make template (python -m tools.template_parameters)"
    result = subprocess.run([sys.executable, "-m", "tools.template_parameters", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_template_parameter_is_in_the_doc_table_in_template_order() -> None:
    names = list(parameters(TEXT))
    assert {"DefaultTokenTtlSeconds", "MaxTokenTtlSeconds", "KeyRotationSchedule", "PandasLayerArn"} <= set(names)
    rows = doc_rows(DOC_TEXT)
    assert list(rows) == names
    assert DOC_TEXT.count(BEGIN) == 1 and DOC_TEXT.index(BEGIN) > DOC_TEXT.index("## Parameters\n")
    assert "| `PandasLayerArn` | none (asked) |" in rows["PandasLayerArn"]
    assert "| `AlertEmail` | empty |" in rows["AlertEmail"]
    assert "| `AthenaBytesScannedCutoff` | `10737418240` |" in rows["AthenaBytesScannedCutoff"]


def test_every_template_parameter_has_a_description() -> None:
    for name, parameter in parameters(TEXT).items():
        assert str(parameter.get("Description", "")).strip(), name


def test_render_of_a_small_template() -> None:
    rendered = render(SMALL_DOC, SMALL_TEMPLATE)
    assert rendered.startswith("# Deploying\n\n## Parameters\n\n" + BEGIN)
    assert rendered.endswith(END + "\nAfter the table.\n")
    assert "| stale |" not in rendered
    rows = doc_rows(rendered)
    assert list(rows) == ["Alpha", "Beta", "Gamma"]
    # one line per cell: the folded description's newlines collapsed, the pipe and the placeholder escaped
    assert rows["Alpha"] == (
        r"| `Alpha` | `5` | First line of a folded description, with a \| pipe and an "
        r"arn:aws:lambda:\<region>:1:layer:x placeholder. Range 1 to 9. |"
    )
    assert rows["Beta"] == "| `Beta` | empty | Empty by default. One of empty, `on`. |"
    assert rows["Gamma"] == "| `Gamma` | none (asked) | No default. |"
    # the table is a proper markdown table: header, separator, one row per parameter, 3 cells each
    table = parameter_table(SMALL_TEMPLATE).splitlines()
    assert table[:2] == ["| Parameter | Default | What it does |", "| --- | --- | --- |"]
    assert len(table) == 5
    for line in table:
        assert len(re.findall(r"(?<!\\)\|", line)) == 4, line


def test_a_parameter_added_to_the_template_makes_the_doc_stale() -> None:
    added = TEXT.replace(
        "Parameters:\n",
        "Parameters:\n  BrandNewParameter:\n    Type: String\n    Default: hello\n"
        "    Description: A parameter the doc does not list yet.\n",
        1,
    )
    assert added != TEXT
    rendered = render(DOC_TEXT, added)
    assert rendered != DOC_TEXT
    assert doc_rows(rendered)["BrandNewParameter"] == (
        "| `BrandNewParameter` | `hello` | A parameter the doc does not list yet. |"
    )
    assert list(doc_rows(rendered)) == ["BrandNewParameter", *parameters(TEXT)]


def test_a_changed_default_or_description_makes_the_doc_stale() -> None:
    changed = TEXT.replace("    Default: 3600\n", "    Default: 1800\n", 1)
    assert changed != TEXT and render(DOC_TEXT, changed) != DOC_TEXT
    assert "| `DefaultTokenTtlSeconds` | `1800` |" in doc_rows(render(DOC_TEXT, changed))["DefaultTokenTtlSeconds"]


def test_a_parameter_without_description_is_refused() -> None:
    with pytest.raises(ValueError, match="Description.*Undescribed"):
        parameter_table("Parameters:\n  Undescribed:\n    Type: String\n")


def test_the_doc_needs_exactly_one_block() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        render("## Parameters\n\nno markers\n", SMALL_TEMPLATE)
    with pytest.raises(ValueError, match="exactly one"):
        render(SMALL_DOC + SMALL_DOC, SMALL_TEMPLATE)


def test_command_line_check_names_make_template_and_the_rewrite_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, template = tmp_path / "deploy.md", tmp_path / "template.yaml"
    doc.write_text(SMALL_DOC, encoding="utf-8")
    template.write_text(SMALL_TEMPLATE, encoding="utf-8")

    assert main(["--check"], doc=doc, template=template) == 1
    assert "make template" in capsys.readouterr().err
    assert doc.read_text(encoding="utf-8") == SMALL_DOC  # --check writes nothing

    assert main([], doc=doc, template=template) == 0
    assert doc.read_text(encoding="utf-8") == render(SMALL_DOC, SMALL_TEMPLATE)
    assert main(["--check"], doc=doc, template=template) == 0

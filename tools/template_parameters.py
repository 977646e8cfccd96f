"""Put template.yaml's parameters into docs/deploy.md: the "Parameters" table (name, default, the parameter's
``Description``, and its allowed values or range) is generated from the template's ``Parameters`` section, so the
documentation cannot drift from what ``sam deploy --guided`` asks for. Every parameter must have a ``Description``.

The table sits between two marker comments in the markdown::

    <!-- BEGIN generated: parameters (python -m tools.template_parameters) -->
    | Parameter | Default | What it does |
    ...
    <!-- END generated: parameters -->

``python -m tools.template_parameters`` rewrites the block in place; ``--check`` exits 1 when the document is
stale (tests/infra/unit/test_deploy_docs.py runs it). Like ``python -m tools.template_schema`` for the template.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The loader the tests use too: plain YAML plus CloudFormation's short tags (!Ref, !Sub, ...). A development
# dependency (aws-sam-translator); no Lambda function imports this module.
from samtranslator.yaml_helper import yaml_parse

from tools.template_inline import ROOT, TEMPLATE, sync_template

DOC = ROOT / "docs" / "deploy.md"
BLOCK_NAME = "parameters"
HEADER = "| Parameter | Default | What it does |\n| --- | --- | --- |\n"

_BLOCK = re.compile(
    r"^<!-- BEGIN generated: (?P<name>[a-z-]+)[^\n]*-->[ \t]*\n"
    r"(?P<body>(?:(?!<!-- END generated: ).*\n)*?)"
    r"<!-- END generated: (?P=name) -->[ \t]*\n",
    re.MULTILINE,
)
# Characters that would end a table cell or be read as markup (an `<region>` placeholder would vanish as an HTML tag)
_MARKDOWN_SPECIAL = re.compile(r"([\\|<])")


def parameters(template: str) -> dict[str, dict[str, Any]]:
    """The template's ``Parameters`` section, in template order (empty when it has none)."""
    parsed = yaml_parse(template)
    if not isinstance(parsed, Mapping):
        raise ValueError("the template is not a YAML mapping")
    section = parsed.get("Parameters") or {}
    if not isinstance(section, Mapping):
        raise ValueError("the template's Parameters section is not a mapping")
    return dict(section)


def cell(text: str) -> str:
    """One line of markdown table cell: whitespace (a folded or literal block's newlines too) collapsed, ``|``,
    ``\\`` and ``<`` escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):  # YAML 1.1: an unquoted true/false; CloudFormation reads it as the string
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    return str(value)


def _code(value: Any) -> str:
    """``value`` as an inline code span (a longer backtick fence when the value holds backticks)."""
    text = " ".join(_scalar(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def default_cell(parameter: Mapping[str, Any]) -> str:
    """``none (asked)`` without a default (every deploy must give a value; ``sam deploy --guided`` asks for it),
    ``empty`` for the empty string, otherwise the value as code."""
    if "Default" not in parameter:
        return "none (asked)"
    value = parameter["Default"]
    if value == "" or value is None:
        return "empty"
    return _code(value)


def _bounds(low: Any, high: Any, *, range_: str, at_least: str, at_most: str) -> str:
    if low is not None and high is not None:
        return f"{range_} {_scalar(low)} to {_scalar(high)}."
    if low is not None:
        return f"{at_least} {_scalar(low)}."
    return f"{at_most} {_scalar(high)}."


def constraints(parameter: Mapping[str, Any]) -> str:
    """The limits CloudFormation enforces, briefly: allowed values, number range, length range ("" when none).
    ``AllowedPattern`` is left out: the description says the format in words."""
    parts = []
    if "AllowedValues" in parameter:
        values = parameter["AllowedValues"]
        shown = [
            "empty" if v == "" else _scalar(v) if isinstance(v, int | float) and not isinstance(v, bool) else _code(v)
            for v in values
        ]
        parts.append("One of " + ", ".join(shown) + ".")
    if "MinValue" in parameter or "MaxValue" in parameter:
        parts.append(_bounds(parameter.get("MinValue"), parameter.get("MaxValue"),
                             range_="Range", at_least="At least", at_most="At most"))
    if "MinLength" in parameter or "MaxLength" in parameter:
        parts.append(_bounds(parameter.get("MinLength"), parameter.get("MaxLength"),
                             range_="Length", at_least="Length at least", at_most="Length at most"))
    return " ".join(parts)


def parameter_table(template: str) -> str:
    """The markdown table of the template's parameters, one row each, in template order."""
    params = parameters(template)
    rows = []
    missing = []
    for name, parameter in params.items():
        if not isinstance(parameter, Mapping):
            raise ValueError(f"parameter {name} is not a mapping")
        description = str(parameter.get("Description") or "").strip()
        if not description:
            missing.append(name)
            continue
        limits = constraints(parameter)
        what = cell(description) + (" " + cell(limits) if limits else "")
        rows.append(f"| `{name}` | {default_cell(parameter)} | {what} |\n")
    if missing:
        raise ValueError(f"give each parameter a Description in the template; missing for: {', '.join(missing)}")
    return HEADER + "".join(rows)


def render(doc: str, template: str) -> str:
    """The document with its (single) generated parameters block rewritten from ``template``."""
    matches = [m for m in _BLOCK.finditer(doc) if m.group("name") == BLOCK_NAME]
    if len(matches) != 1:
        raise ValueError(
            f"expected exactly one '<!-- BEGIN generated: {BLOCK_NAME} ... -->' ... "
            f"'<!-- END generated: {BLOCK_NAME} -->' block in the document, found {len(matches)}"
        )
    match = matches[0]
    return doc[: match.start("body")] + parameter_table(template) + doc[match.end("body") :]


def main(argv: list[str], *, doc: Path = DOC, template: Path = TEMPLATE) -> int:
    template_text = template.read_text(encoding="utf-8")
    return sync_template(
        argv,
        lambda current: render(current, template_text),
        target=doc,
        stale=f"{doc.name}'s parameter table does not match {template.name}'s Parameters: run make template "
        "(python -m tools.template_parameters)",
        written=f"wrote {len(parameters(template_text))} parameters of {template.name} into {doc.name}",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

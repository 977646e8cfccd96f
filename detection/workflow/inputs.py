"""What each state of the detection workflow hands its Lambda function (statemachine/detection.asl.json), as
pydantic models the handlers parse with Powertools' parser. A state input that does not match is a
:class:`~detection.workflow.steps.WorkflowInputError` naming every problem, so the run fails with that error's name
rather than a KeyError deep in a step. Fields the states pass and a step does not read are ignored."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from detection.workflow.steps import WorkflowInputError

Model = TypeVar("Model", bound=BaseModel)


def _finite(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value < 2**40:
        raise ValueError("must be epoch seconds")
    return float(value)


#: Epoch seconds: a JSON number (not a boolean, not a string), finite.
EpochSeconds = Annotated[StrictInt | StrictFloat, AfterValidator(_finite)]
Text = Annotated[str, Field(min_length=1)]


class StateInput(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PrepareInput(StateInput):
    """Prepare: the execution's input (``now`` or ``scheduled_time``, optional ``window_minutes``), its name and its
    start time."""

    input: dict[str, Any] = Field(default_factory=dict)
    execution: Text
    started: str | None = None


class Plan(StateInput):
    """What Score reads of Prepare's plan."""

    run_id: Text
    now: EpochSeconds
    destination: Text
    pages: Text


class ScoreInput(StateInput):
    plan: Plan


class RecordInput(StateInput):
    """One Map iteration: a page of verdicts (its S3 URI) of the run."""

    run_id: Text
    now: EpochSeconds
    page: Text


class PublishInput(StateInput):
    run_id: Text
    now: EpochSeconds
    pages: Text


class ReportInput(StateInput):
    """ReportRun (``succeeded``: what Score, RecordVerdicts and Publish returned) or ReportFailure (``failed``: the
    error the run caught)."""

    outcome: Literal["succeeded", "failed"]
    error: dict[str, Any] = Field(default_factory=dict)
    score: dict[str, Any] = Field(default_factory=dict)
    recorded: list[dict[str, Any]] = Field(default_factory=list)
    published: dict[str, Any] = Field(default_factory=dict)


def parse_state(event: Any, model: type[Model]) -> Model:
    """``event`` as ``model``; :class:`WorkflowInputError` naming each problem (never the values) otherwise."""
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise WorkflowInputError(f"{model.__name__}: {problems}") from None

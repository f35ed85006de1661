"""What the deployment API and CLI accept: rollout specs, the emergency profile and
script packages — one model and one validation for both edges.

The CLI decodes a file (``core/documents.py`` turns YAML or JSON into plain data, safely),
the API a JSON body; both hand the decoded value to ``rollout_spec``,
``emergency_profile_spec`` or ``script_package_spec``. The same mistake therefore gives
the same message everywhere — where (the field's path, ``rings[0].concurrency``) and what
was expected — as a ``ValidationFailed`` (HTTP 422, CLI exit 2). Shapes are checked
strictly: nothing is coerced (``"5"`` is not a number, ``5`` is not a list, ``[1]`` is not
a name). The rollout policy is checked by ``core.rollout.parse_policy``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from patchwarden.core import rollout as rules
from patchwarden.core.errors import ValidationFailed

#: Limits of a rollout spec (docs/deployment.md).
MAX_RINGS = 20
MAX_GROUPS = 1000
MAX_WINDOWS = 50
MAX_SELECTION = 10_000
MAX_DEPENDENCIES = 1000
#: Script packages: what the agent runs (docs/agent-jobs.md) and what the store holds.
MAX_ARGV_ITEMS = 64
MAX_ARGV_ITEM_CHARS = 4096
MAX_ARTIFACT_BASE64 = 200 * 1024 * 1024
#: A script package name: a letter or digit, then letters, digits, ``.``, ``_``, ``+``,
#: ``-`` — at most 120 characters. No ``/``, no spaces, nothing a path, a shell or a
#: terminal would read differently. A version also allows ``~`` and ``:`` (epochs, dpkg
#: pre-releases), at most 60 characters. Both are subsets of what the agent accepts.
SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,119}")
SCRIPT_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]{0,59}")

# Characters that change how text is displayed without being visible: bidirectional
# embeddings, overrides and isolates (a name could read "exe.txt" and be "txt.exe").
_DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)

M = TypeVar("M", bound=BaseModel)


# ------------------------------------------------------------------------ values


def _plain_text(value: str) -> str:
    """Text shown to people: not blank, no control or direction-changing characters."""
    if not value.strip():
        raise PydanticCustomError("pw_text", "should not be empty")
    for char in value:
        if unicodedata.category(char) == "Cc" or char in _DIRECTION_CONTROLS:
            raise PydanticCustomError(
                "pw_text",
                "should be plain text: character {code} (a control or direction-changing "
                "character) is not allowed",
                {"code": f"U+{ord(char):04X}"},
            )
    return value


def _reference(value: object) -> int | str:
    """A group, window or baseline: its id (a whole number ≥ 1) or its name."""
    if type(value) is int and value >= 1:
        return value
    if isinstance(value, str) and 0 < len(value) <= 120:
        return _plain_text(value)
    raise PydanticCustomError(
        "pw_reference",
        "should be an id (a whole number ≥ 1) or a name (1-120 characters), got {got}",
        {"got": rules.shown(value)},
    )


def _count(value: object) -> str:
    try:
        spec = rules.parse_count(value)
    except ValidationFailed as exc:
        raise PydanticCustomError("pw_count", "{problem}", {"problem": exc.message}) from None
    return f"{spec.amount:g}%" if spec.percent else str(int(spec.amount))


def _matches(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise PydanticCustomError(
                "pw_pattern",
                "should be {rule}, got {got}",
                {"rule": rule, "got": rules.shown(value)},
            )
        return value

    return AfterValidator(check)


def _argv(value: list[str]) -> list[str]:
    if not value[0]:
        raise PydanticCustomError("pw_argv", "the program (first item) is empty")
    if any("\0" in item for item in value):
        raise PydanticCustomError("pw_argv", "items must not contain NUL characters")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=120), AfterValidator(_plain_text)]
RolloutName = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_plain_text)
]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_plain_text)
]
Reference = Annotated[int | str, PlainValidator(_reference, json_schema_input_type=int | str)]
Count = Annotated[str, PlainValidator(_count, json_schema_input_type=int | str)]
ScriptName = Annotated[
    str,
    _matches(
        SCRIPT_NAME, "1-120 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
    ),
]
ScriptVersion = Annotated[
    str,
    _matches(
        SCRIPT_VERSION,
        "1-60 letters, digits, '.', '_', '+', '~', ':' or '-', starting with a letter or digit",
    ),
]
Argv = Annotated[
    list[Annotated[str, StringConstraints(max_length=MAX_ARGV_ITEM_CHARS)]],
    Field(min_length=1, max_length=MAX_ARGV_ITEMS),
    AfterValidator(_argv),
]


class _Strict(BaseModel):
    # No coercion, no unknown keys, no NaN or infinity.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


# ------------------------------------------------------------------------- rings


@dataclass(frozen=True, slots=True)
class RingSpec:
    """A ring as requested (counts may be percentages)."""

    name: str
    groups: tuple[int | str, ...] = ()
    percent: float = 100.0
    windows: tuple[int | str, ...] = ()
    concurrency: str = "1"
    error_budget: str = "1"
    success_threshold: float = 100.0
    soak_minutes: int = 0
    requires_approval: bool = False


class RingModel(_Strict):
    """A ring of a rollout spec or of the emergency profile."""

    name: Name = "ring"
    groups: list[Reference] = Field(default_factory=list, max_length=MAX_GROUPS)
    percent: float = Field(100.0, gt=0, le=100)
    windows: list[Reference] = Field(default_factory=list, max_length=MAX_WINDOWS)
    concurrency: Count = "1"
    error_budget: Count = "1"
    success_threshold: float = Field(100.0, ge=0, le=100)
    soak_minutes: int = Field(0, ge=0, le=30 * 24 * 60)
    requires_approval: bool = False

    def to_spec(self) -> RingSpec:
        """The plain value the planner takes."""
        return RingSpec(
            name=self.name,
            groups=tuple(self.groups),
            percent=self.percent,
            windows=tuple(self.windows),
            concurrency=self.concurrency,
            error_budget=self.error_budget,
            success_threshold=self.success_threshold,
            soak_minutes=self.soak_minutes,
            requires_approval=self.requires_approval,
        )


# ---------------------------------------------------------------------- rollouts


class RolloutSpec(_Strict):
    """A rollout to plan (``patchwarden rollouts create``, ``POST /api/v1/rollouts``)."""

    name: RolloutName
    target_groups: list[Reference] = Field(min_length=1, max_length=MAX_GROUPS)
    rings: list[RingModel] = Field(min_length=1, max_length=MAX_RINGS)
    baseline: Reference | None = None
    advisories: list[Identifier] = Field(default_factory=list, max_length=MAX_SELECTION)
    packages: list[Identifier] = Field(default_factory=list, max_length=MAX_SELECTION)
    dependencies: list[Annotated[list[Reference], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES
    )
    policy: dict[str, Any] = Field(default_factory=dict)
    emergency: bool = False
    windows: list[Reference] = Field(default_factory=list, max_length=MAX_WINDOWS)

    @property
    def rollout_policy(self) -> rules.RolloutPolicy:
        """The typed policy (already checked by ``rollout_spec``)."""
        return rules.parse_policy(self.policy)


def rollout_spec(data: object, *, source: str = "rollout spec") -> RolloutSpec:
    """Validate a decoded rollout spec; ``source`` (a file name) starts every message."""
    spec = validated(RolloutSpec, data, source=source)
    _check_policy(spec.policy, source)
    return spec


# -------------------------------------------------------------------- emergencies


def _default_emergency_rings() -> list[RingModel]:
    return [RingModel(name="emergency", concurrency="10%", error_budget="1")]


class EmergencyProfileSpec(_Strict):
    """The prepared emergency rollout (``rollouts emergency-profile``,
    ``PUT /api/v1/policies/emergency``): no rings (or an empty list) means one ring
    ``emergency`` with concurrency 10% and an error budget of 1."""

    enabled: bool = False
    rings: list[RingModel] = Field(default_factory=_default_emergency_rings, max_length=MAX_RINGS)
    policy: dict[str, Any] = Field(default_factory=dict)
    windows: list[Reference] = Field(default_factory=list, max_length=MAX_WINDOWS)

    def effective_rings(self) -> list[RingModel]:
        """The rings an emergency rollout gets."""
        return list(self.rings) or _default_emergency_rings()


def emergency_profile_spec(
    data: object, *, source: str = "emergency profile"
) -> EmergencyProfileSpec:
    """Validate a decoded emergency profile (its hosts are chosen per finding, so its
    rings take a percentage of them and name no groups)."""
    profile = validated(EmergencyProfileSpec, data, source=source)
    for index, ring in enumerate(profile.rings):
        if ring.groups:
            raise ValidationFailed(
                f"{source}: rings[{index}].groups: emergency rings take hosts by percent "
                "only (no groups)"
            )
    _check_policy(profile.policy, source)
    return profile


# --------------------------------------------------------------- script packages


class ScriptCommands(_Strict):
    """The four argv lists of a script package (no shell: never split or joined)."""

    detect: Argv
    install: Argv
    verify: Argv
    uninstall: Argv


class ScriptPackageSpec(_Strict):
    """A script package's name, version and commands (the artifact comes separately)."""

    name: ScriptName
    version: ScriptVersion
    commands: ScriptCommands


class ScriptPackageUpload(ScriptPackageSpec):
    """``POST /api/v1/script-packages``: the spec plus the artifact in base64."""

    artifact_base64: str = Field(max_length=MAX_ARTIFACT_BASE64)


def script_package_spec(data: object, *, source: str = "script package") -> ScriptPackageSpec:
    """Validate a script package's name, version and commands."""
    return validated(ScriptPackageSpec, data, source=source)


# ------------------------------------------------------------------- validation


def validated(model: type[M], data: object, *, source: str) -> M:
    """``data`` as ``model``, or ``ValidationFailed`` naming the first problem's path and
    what was expected (the next few problems go into the hint)."""
    if not isinstance(data, dict):
        raise ValidationFailed(f"{source}: should be an object, got {_kind(data)}")
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        problems = [_problem(model, error) for error in exc.errors(include_url=False)]
    more = problems[1:4]
    hint = None
    if more:
        rest = len(problems) - 1 - len(more)
        hint = "also: " + "; ".join(more) + (f"; and {rest} more" if rest else "")
    raise ValidationFailed(f"{source}: {problems[0]}", hint=hint)


def _check_policy(policy: dict[str, Any], source: str) -> None:
    try:
        rules.parse_policy(policy)
    except ValidationFailed as exc:
        raise ValidationFailed(f"{source}: {exc.message}", hint=exc.hint) from None


def _problem(model: type[BaseModel], error: ErrorDetails) -> str:
    loc = error["loc"]
    where = _path(loc) or "(document)"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: is required"
    if kind == "extra_forbidden":
        known = _model_at(model, loc[:-1])
        keys = f" (known: {', '.join(known.model_fields)})" if known is not None else ""
        return f"{where}: unknown key{keys}"
    if kind.startswith("pw_"):
        return f"{where}: {error['msg']}"
    return f"{where}: {error['msg']}, got {rules.shown(error['input'])}"


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            text += "[key]"
        else:
            text += f".{part}" if text else part
    return text


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that holds the keys at ``loc`` (to list them when one is unknown)."""
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return None
        current = found
    return current


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__

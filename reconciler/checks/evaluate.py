"""Checks -> results: every check of a version is evaluated (lazily collected, like pandera: one failing check
never hides another), each rule's measure compared with the check's dbt-style conditions.

Status of a check (``severity: error``, the default): ``fail`` when ``error_if`` holds, else ``warn`` when
``warn_if`` holds, else ``pass``. With ``severity: warn`` the check never fails: ``warn`` when ``warn_if`` (or,
without it, ``error_if``) holds. Rules counting offending files default to ``error_if: "!=0"`` when no condition
is given. A check that cannot be evaluated (unreadable schema, command that does not answer) fails (warns with
``severity: warn``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..model import CheckSpec, Content, DesiredState, VersionKey
from .catalog import COUNT_RULES, DEFAULT_CONDITION, MEASURE_RULES, parse_condition
from .results import SHOWN_OFFENDING, CheckResult, VersionChecks
from .rules import RULE_FUNCTIONS, CheckInput, Outcome


def conditions(spec: CheckSpec) -> tuple[str | None, str | None]:
    """The (error, warn) conditions the check is judged by, defaults applied."""
    error_if, warn_if = spec.error_if, spec.warn_if
    if error_if is None and warn_if is None and spec.rule in COUNT_RULES:
        error_if = DEFAULT_CONDITION
    if spec.severity == "warn":
        return None, warn_if or error_if
    return error_if, warn_if


def judge(spec: CheckSpec, outcome: Outcome) -> CheckResult:
    measure = float(outcome.offending_count if spec.rule in COUNT_RULES and spec.rule != "command"
                    else outcome.measure)
    offending = tuple(p for p, _ in outcome.offending[:SHOWN_OFFENDING])
    error_if, warn_if = conditions(spec)
    if outcome.problem is not None:
        status = "fail" if spec.severity == "error" else "warn"
        return CheckResult(spec.name, spec.rule, spec.severity, status, None, None, offending,
                           outcome.offending_count, outcome.problem, spec.span)
    status, threshold = "pass", error_if or warn_if
    if error_if is not None and parse_condition(error_if).holds(measure):
        status, threshold = "fail", error_if
    elif warn_if is not None and parse_condition(warn_if).holds(measure):
        status, threshold = "warn", warn_if
    return CheckResult(spec.name, spec.rule, spec.severity, status, measure, threshold, offending,
                       outcome.offending_count, _message(spec, measure, outcome, status, threshold), spec.span)


def _message(spec: CheckSpec, measure: float, outcome: Outcome, status: str, threshold: str | None) -> str:
    what = COUNT_RULES.get(spec.rule) or MEASURE_RULES.get(spec.rule, spec.rule)
    shown = int(measure) if measure.is_integer() else round(measure, 3)
    text = f"{what}: {shown}"
    if status != "pass" and threshold:
        text += f" ({'error_if' if status == 'fail' else 'warn_if'} {threshold!r})"
    if outcome.offending and (status != "pass" or spec.rule in MEASURE_RULES):
        path, why = outcome.offending[0]
        text += f"; first: {path} ({why})"
    if outcome.note:
        text += f"; {outcome.note}"
    return text


def evaluate_check(spec: CheckSpec, data: CheckInput) -> CheckResult:
    return judge(spec, RULE_FUNCTIONS[spec.rule](spec, data))


def evaluate_checks(specs: Sequence[CheckSpec], data: CheckInput,
                    keep: Sequence[CheckResult] = (), rules: frozenset[str] | None = None) -> VersionChecks:
    """Every check of ``specs`` on ``data``. With ``rules``, only checks of those rules are evaluated; the
    others keep their result from ``keep`` (by name), as apply does for rules that only read the content."""
    kept = {r.name: r for r in keep}
    results = []
    for spec in specs:
        if rules is not None and spec.rule not in rules and spec.name in kept:
            results.append(kept[spec.name])
        else:
            results.append(evaluate_check(spec, data))
    return VersionChecks(data.version, data.content.digest(), tuple(results))


def check_versions(state: DesiredState, contents: Mapping[VersionKey, Content], keys: Iterable[VersionKey], *,
                   workers: int = 4) -> dict[VersionKey, VersionChecks]:
    """The results of the checks of the versions ``keys`` of ``state``, each on its content in ``contents``
    (its parent's for change guards; any manifest version's for leakage across datasets)."""
    others = {str(k): c for k, c in contents.items()}
    out: dict[VersionKey, VersionChecks] = {}
    for key in keys:
        spec = state.version(key)
        found = [contents[p] for p in spec.parents if p in contents]
        parent = Content.merged(found) if found and len(found) == len(spec.parents) else None
        out[key] = evaluate_checks(spec.checks, CheckInput(key, contents[key], parent, others, workers,
                                                            spec.properties.splits))
    return out

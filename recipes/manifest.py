"""Recipe manifest validation, plus small manifest helpers (semver, min_history, grain).
Diffs and merges of manifests live in ``recipes.lineage``.

Plain Python (no Django import) so it can be unit-tested alone. The structure is described
by ``manifest_schema.json`` (JSON Schema draft 2020-12); the rules JSON Schema cannot
express (metric names per family, target/threshold order, one stage per type, cron syntax,
alert conditions -- parsed with ``recipes.alert_rules`` --, the retraining policy -- parsed
with ``recipes.retraining`` --, the training stage's tuning section -- ``recipes.tuning`` --,
the explain stage's place and config -- ``recipes.explain_config`` --, ...) are checked here,
only on the parts that passed the schema.

``validate_manifest`` returns every problem at once as ``[{"path", "message"}]`` where
``path`` is a JSON pointer (RFC 6901) into the manifest, optionally prefixed (the API
reports ``/manifest/evaluation/metrics/MAPE/target``), and ``message`` names the field and
says what is expected. It never raises on malformed input.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cronsim
from jsonschema import Draft202012Validator

from mlworkspace.jsondepth import DEFAULT_MAX_DEPTH, too_deep_in_value
from mlworkspace.jsondepth import message as depth_message

from . import alert_rules, catalog, distributed_config, explain_config, forecasting_config, retraining, tuning

SCHEMA_PATH = Path(__file__).with_name("manifest_schema.json")

# Top-level sections in the order errors are reported.
SECTIONS = (
    "metadata",
    "requirements",
    "pipeline",
    "evaluation",
    "lineage",
    "deployment",
    "monitoring",
    "retraining",
)

SEMVER_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
SEMVER_PARTS = ("major", "minor", "patch")

MIN_HISTORY_UNITS = ("days", "weeks", "months", "years", "rows")
_MIN_HISTORY_RE = re.compile(r"^\s*([0-9]+)\s*(day|week|month|year|row)s?\s*$", re.IGNORECASE)
MIN_HISTORY_EXAMPLES = "'2 years', '104 weeks', '90 days', '6 months' or '500 rows'"

THRESHOLD_FIELDS = ("target", "threshold_warning", "threshold_critical")

CRON_EXPECTED = "a 5-field cron expression (minute hour day-of-month month day-of-week) or null"

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ManifestError:
    """One validation problem: a JSON pointer and a human message."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# --------------------------------------------------------------------------- helpers


def parse_semver(s: Any) -> tuple[int, int, int]:
    """'1.2.3' -> (1, 2, 3). ValueError for anything that is not MAJOR.MINOR.PATCH."""
    if not isinstance(s, str):
        raise ValueError(f"version must be a string like 1.0.0, got {type(s).__name__}")
    m = SEMVER_RE.match(s.strip())
    if not m:
        raise ValueError(f"{s!r} is not a semantic version MAJOR.MINOR.PATCH such as 1.0.0")
    return int(m[1]), int(m[2]), int(m[3])


def bump_semver(s: str, part: str = "patch") -> str:
    """Next version: bump_semver('1.2.3', 'minor') == '1.3.0'. ValueError on bad input."""
    major, minor, patch = parse_semver(s)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"part must be one of {', '.join(SEMVER_PARTS)}, got {part!r}")


def parse_min_history(s: Any) -> tuple[int, str] | None:
    """'2 years' -> (2, 'years'); '1 week' -> (1, 'weeks'); None -> None.

    Units are days, weeks, months, years or rows (singular or plural, any case); the
    amount is a positive integer. ValueError for anything else.
    """
    if s is None:
        return None
    if not isinstance(s, str):
        raise ValueError(f"min_history must be a string like {MIN_HISTORY_EXAMPLES}, got {type(s).__name__}")
    m = _MIN_HISTORY_RE.match(s)
    if not m:
        raise ValueError(f"{s!r} is not a history length like {MIN_HISTORY_EXAMPLES}")
    amount = int(m[1])
    if amount < 1:
        raise ValueError(f"{s!r}: the amount must be at least 1")
    return amount, m[2].lower() + "s"


def grain_columns(manifest: Any) -> list[str]:
    """The grain columns of a manifest: requirements.grain as a list or a comma-separated
    string, stripped, empty names dropped. [] when absent or malformed."""
    req = manifest.get("requirements") if isinstance(manifest, dict) else None
    grain = req.get("grain") if isinstance(req, dict) else None
    if isinstance(grain, str):
        parts = grain.split(",")
    elif isinstance(grain, list):
        parts = [g for g in grain if isinstance(g, str)]
    else:
        return []
    return [p.strip() for p in parts if p.strip()]


def requires_workspace_evidence(manifest: Any, level: str | None) -> bool:
    """evaluation.approval.require_workspace_evidence: the approval gate accepts only runs the
    workspace executed itself, not results an external runner reported. Default: true for
    client recipes (a client's model is approved on evidence the workspace produced), false
    for baseline and industry recipes."""
    evaluation = manifest.get("evaluation") if isinstance(manifest, dict) else None
    approval = evaluation.get("approval") if isinstance(evaluation, dict) else None
    value = approval.get("require_workspace_evidence") if isinstance(approval, dict) else None
    return value if isinstance(value, bool) else level == "client"


def rewrite_metadata(manifest: dict, *, id: str, level: str, version: str, name: str | None = None) -> dict:
    """A deep copy of ``manifest`` with metadata.id/level/version (and name, if given)
    replaced. A missing or malformed metadata block is replaced by a new one."""
    out = copy.deepcopy(manifest) if isinstance(manifest, dict) else {}
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        meta = out["metadata"] = {}
    meta["id"] = id
    meta["level"] = level
    meta["version"] = version
    if name is not None:
        meta["name"] = name
    return out


def cron_problem(text: str) -> str | None:
    """Why ``text`` is not a 5-field cron expression ("3 fields", cronsim's reason), or None.
    The one cron rule of the manifest (deployment.schedule, retraining.triggers.schedule)."""
    fields = text.split()
    if len(fields) != 5:
        return f"{len(fields)} field{'' if len(fields) == 1 else 's'}"
    try:
        cronsim.CronSim(text, datetime.now())
    except (cronsim.CronSimError, ValueError, TypeError, IndexError) as exc:
        return str(exc) or "invalid"
    return None


def pointer(path: Path_, prefix: str = "") -> str:
    """JSON pointer (RFC 6901) for a path of keys/indices; the root is '' (or the prefix)."""
    tokens = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return prefix.rstrip("/") + tokens


# --------------------------------------------------------------------------- schema


@functools.cache
def load_schema() -> dict:
    """The manifest JSON Schema (a dict; do not mutate). Its list of stage types is
    ``catalog.STAGE_TYPES``, the one list, whatever the file's enum says."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    stage = schema["properties"]["pipeline"]["properties"]["stages"]["items"]
    stage["properties"]["type"]["enum"] = list(catalog.STAGE_TYPES)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if _is_number(value):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _label(path: Path_) -> str:
    """How a message names the field at ``path``."""
    if not path:
        return "the manifest"
    last = path[-1]
    if isinstance(last, int):
        parent = next((p for p in reversed(path[:-1]) if isinstance(p, str)), None)
        return f"item {last} of '{parent}'" if parent else f"item {last}"
    if len(path) >= 2 and path[-2] == "metrics" and path[:1] == ("evaluation",):
        return f"metric '{last}'"
    if len(path) >= 2 and path[-2] == "alerts":
        return f"alert '{last}'"
    return f"'{last}'"


def _where(path: Path_) -> str:
    return "" if not path else f" in {_label(path)}"


def _required_name(error: Any) -> str | None:
    for name in error.validator_value:
        if isinstance(error.instance, dict) and name not in error.instance:
            if error.message.startswith(repr(name)):
                return name
    return None


def _translate(error: Any) -> list[tuple[Path_, str]]:
    """One jsonschema error -> [(path, message)] (additionalProperties can give several)."""
    path: Path_ = tuple(error.absolute_path)
    kind = error.validator
    value = error.validator_value
    inst = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}

    if "propertyNames" in error.relative_schema_path:
        return [((*path, inst), f"{_label(path)} has a field with an empty name")]
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return [(path, f"{_label(path)} must be {wanted}, got {_describe(inst)}")]
    if kind == "required":
        name = _required_name(error)
        if name is None:
            return [(path, f"{_label(path)}: {error.message}")]
        return [((*path, name), f"missing required field '{name}'{_where(path)}")]
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        out = []
        for key in inst:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            tail = f"; did you mean '{hint[0]}'?" if hint else f" (allowed: {', '.join(allowed)})"
            out.append(((*path, key), f"unknown field '{key}'{_where(path)}{tail}"))
        return out
    if kind == "enum":
        return [(path, f"{_label(path)}: {inst!r} is not one of {', '.join(map(str, value))}")]
    if kind == "pattern":
        expected = schema.get("x-expected", f"match the pattern {value}")
        return [(path, f"{_label(path)} must be {expected}, got {inst!r}")]
    if kind == "minLength":
        return [(path, f"{_label(path)} must not be empty")]
    if kind == "minItems":
        if value == 1:
            return [(path, f"{_label(path)} must not be empty")]
        return [(path, f"{_label(path)} must have at least {value} items")]
    if kind == "minProperties":
        return [(path, f"{_label(path)} must not be empty")]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {
            "minimum": "at least",
            "exclusiveMinimum": "greater than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[kind]
        return [(path, f"{_label(path)} must be {word} {value}, got {inst}")]
    if kind == "anyOf" and "x-expected" in schema:
        return [(path, f"{_label(path)} needs {schema['x-expected']}")]
    return [(path, f"{_label(path)}: {error.message}")]


def _schema_errors(manifest: dict) -> list[tuple[Path_, str]]:
    raw = list(_validator().iter_errors(manifest))
    typed = {tuple(e.absolute_path) for e in raw if e.validator == "type"}
    out: list[tuple[Path_, str]] = []
    for e in raw:
        # A wrong type says it all: drop the enum/... errors at the same spot.
        if e.validator != "type" and tuple(e.absolute_path) in typed:
            continue
        out.extend(_translate(e))
    return out


# --------------------------------------------------------------------------- semantic checks


class _Checker:
    def __init__(self, manifest: dict, family: str | None, level: str | None, bad: list[Path_]):
        self.m = manifest
        self.given_family = family
        self.given_level = level
        self.bad = bad
        self.errors: list[tuple[Path_, str]] = []
        meta = manifest.get("metadata")
        meta_family = meta.get("model_family") if isinstance(meta, dict) else None
        if family in catalog.FAMILIES:
            self.family: str | None = family
        elif meta_family in catalog.FAMILIES:
            self.family = meta_family
        else:
            self.family = None

    def add(self, path: Path_, message: str) -> None:
        self.errors.append((path, message))

    def clean(self, path: Path_) -> bool:
        """No schema error at, under or above ``path``."""
        n = len(path)
        for b in self.bad:
            m = min(n, len(b))
            if b[:m] == path[:m]:
                return False
        return True

    def section(self, name: str) -> dict:
        v = self.m.get(name)
        return v if isinstance(v, dict) else {}

    def run(self) -> list[tuple[Path_, str]]:
        self.check_finite(self.m, ())
        self.check_metadata()
        self.check_requirements()
        self.check_pipeline()
        self.check_metrics()
        self.check_deployment()
        self.check_monitoring()
        self.check_retraining()
        self.errors.extend(tuning.check(self.m, self.family, self.clean))  # the training stage's tuning
        self.errors.extend(distributed_config.check(self.m, self.family, self.clean))  # its Dask switch
        if self.family == "forecasting":  # its frequency, algorithms, horizon, ...: not first at run time
            self.errors.extend(e for e in forecasting_config.check(self.m) if self.clean(e[0]))
            self.errors.extend(e for e in forecasting_config.check_freshness(self.m) if self.clean(e[0]))
        return self.errors

    # -- generic
    def check_finite(self, value: Any, path: Path_) -> None:
        """NaN/Infinity anywhere (JSON has no such numbers; PostgreSQL jsonb rejects them)."""
        reported = set(self.bad)
        stack: list[tuple[Any, Path_]] = [(value, path)]
        while stack:
            v, p = stack.pop()
            if isinstance(v, float) and not math.isfinite(v):
                if p not in reported:
                    self.add(p, f"{_label(p)} must be a finite number, got {v}")
            elif isinstance(v, dict):
                stack.extend((child, (*p, k)) for k, child in reversed(v.items()))
            elif isinstance(v, list):
                stack.extend((child, (*p, i)) for i, child in reversed(list(enumerate(v))))

    # -- metadata
    def check_metadata(self) -> None:
        meta = self.section("metadata")
        for field, given, valid in (
            ("model_family", self.given_family, catalog.FAMILIES),
            ("level", self.given_level, catalog.LEVELS),
        ):
            said = meta.get(field)
            path = ("metadata", field)
            if given is None or said not in valid or not self.clean(path):
                continue
            if said != given:
                self.add(path, f"'{field}': manifest says '{said}' but the recipe is '{given}'")

    # -- requirements
    def check_requirements(self) -> None:
        req = self.section("requirements")
        hist = req.get("min_history")
        if isinstance(hist, str) and self.clean(("requirements", "min_history")):
            try:
                parse_min_history(hist)
            except ValueError:
                self.add(
                    ("requirements", "min_history"),
                    f"'min_history' must be a history length like {MIN_HISTORY_EXAMPLES} (or null), "
                    f"got {hist!r}",
                )
        grain = req.get("grain")
        path = ("requirements", "grain")
        if isinstance(grain, (str, list)) and grain and self.clean(path):
            parts = grain.split(",") if isinstance(grain, str) else grain
            if not all(isinstance(p, str) for p in parts):
                return
            names = [p.strip() for p in parts]
            if any(not n for n in names):
                self.add(path, f"'grain' has an empty column name: {grain!r}")
            dupes = sorted({n for n in names if n and names.count(n) > 1})
            if dupes:
                self.add(path, f"'grain' lists {', '.join(repr(d) for d in dupes)} more than once")

    # -- pipeline
    def check_pipeline(self) -> None:
        stages = self.section("pipeline").get("stages")
        if not isinstance(stages, list) or not stages:
            return
        names: dict[str, int] = {}
        types: dict[str, int] = {}
        all_typed = True
        for i, st in enumerate(stages):
            if not isinstance(st, dict):
                all_typed = False
                continue
            name = st.get("name")
            if isinstance(name, str) and name:
                if name in names:
                    self.add(
                        ("pipeline", "stages", i, "name"),
                        f"duplicate stage name '{name}': stage {names[name]} already uses it; "
                        "stage names must be unique",
                    )
                else:
                    names[name] = i
            stype = st.get("type")
            if stype not in catalog.STAGE_TYPES:
                all_typed = False  # the schema already reported it
                continue
            if stype in types and stype != "feature_prep":
                self.add(
                    ("pipeline", "stages", i, "type"),
                    f"'type': only one '{stype}' stage is allowed (stage {types[stype]} is already "
                    f"'{stype}'); only feature_prep may repeat",
                )
            types.setdefault(stype, i)
        if all_typed and "training" not in types:
            self.add(
                ("pipeline", "stages"),
                "'stages' needs a stage of type 'training' (found: "
                + ", ".join(dict.fromkeys(st["type"] for st in stages))
                + ")",
            )
        if "explain" in types:
            self.check_explain(stages, types)
        if "deployment" in types:  # a score run's contributions (runs.explain.batch)
            base: Path_ = ("pipeline", "stages", types["deployment"], "config")
            if self.clean(base):
                for suffix, message in explain_config.scoring_problems(
                    stages[types["deployment"]].get("config")
                ):
                    self.add((*base, *suffix), message)

    def check_explain(self, stages: list, types: dict[str, int]) -> None:
        """The explain stage explains the trained model on the training run's holdout: it comes
        after training (and after evaluation, whose metric its permutation importance uses);
        its config is checked by ``recipes.explain_config``."""
        index = types["explain"]
        path: Path_ = ("pipeline", "stages", index, "type")
        later = [(types[t], t) for t in ("training", "evaluation") if types.get(t, -1) > index]
        if later and self.clean(path):
            at, what = max(later)
            self.add(
                path,
                f"the 'explain' stage (stage {index}) must come after the '{what}' stage (stage {at}): "
                "it explains the trained model on the training run's holdout; move it later",
            )
        config = stages[index].get("config", {})
        base: Path_ = ("pipeline", "stages", index, "config")
        if not self.clean(base):
            return
        for suffix, message in explain_config.problems(config, self.family):
            if suffix[:1] != ("tuning",):  # recipes.tuning says where a tuning section belongs
                self.add((*base, *suffix), message)

    # -- evaluation
    def known_metrics(self) -> dict[str, tuple[str, str]]:
        if self.family is not None:
            return catalog.METRICS.get(self.family, {})
        merged: dict[str, tuple[str, str]] = {}
        for fam_metrics in catalog.METRICS.values():
            for k, v in fam_metrics.items():
                merged.setdefault(k, v)
        return merged

    def check_metrics(self) -> None:
        metrics = self.section("evaluation").get("metrics")
        if not isinstance(metrics, dict):
            return
        known = self.known_metrics()
        for name, block in metrics.items():
            base: Path_ = ("evaluation", "metrics", name)
            if not isinstance(block, dict) or not isinstance(name, str) or not name:
                continue
            explicit = block.get("direction")
            if explicit is not None and explicit not in (catalog.LOWER, catalog.HIGHER):
                continue  # the schema reported the bad direction
            if explicit is None and self.family is not None and name not in known:
                fam = self.family
                self.add(
                    base,
                    f"metric '{name}' is not a known {fam} metric ({', '.join(known)}); "
                    'give it an explicit "direction": "lower" or "higher" to use a custom metric',
                )
                continue
            direction = explicit or (known[name][0] if name in known else None)
            if direction is None:
                continue
            self.check_order(name, block, direction, base)

    def check_order(self, name: str, block: dict, direction: str, base: Path_) -> None:
        vals = {f: block[f] for f in THRESHOLD_FIELDS if _is_number(block.get(f)) and math.isfinite(block[f])}
        lower = direction == catalog.LOWER
        op = "<=" if lower else ">="
        why = "lower is better" if lower else "higher is better"
        pairs = [("target", "threshold_warning"), ("threshold_warning", "threshold_critical")]
        if "threshold_warning" not in vals:
            pairs.append(("target", "threshold_critical"))
        for a, b in pairs:
            if a not in vals or b not in vals:
                continue
            ok = vals[a] <= vals[b] if lower else vals[a] >= vals[b]
            if not ok:
                at = "target" if a == "target" else b
                self.add(
                    (*base, at),
                    f"metric '{name}': '{a}' ({vals[a]}) must be {op} '{b}' ({vals[b]}) because {why}",
                )

    # -- deployment
    def check_deployment(self) -> None:
        self.check_cron(("deployment", "schedule"), self.section("deployment").get("schedule"))

    def check_cron(self, path: Path_, value: Any) -> None:
        if not isinstance(value, str) or not self.clean(path):
            return
        problem = cron_problem(value)
        if problem is not None:
            self.add(path, f"'{path[-1]}' must be {CRON_EXPECTED}, got {value!r} ({problem})")

    # -- monitoring
    def check_monitoring(self) -> None:
        mon = self.section("monitoring")
        mon_metrics = mon.get("metrics")
        if isinstance(mon_metrics, list):
            eval_metrics = self.section("evaluation").get("metrics")
            defined = set(eval_metrics) if isinstance(eval_metrics, dict) else set()
            known = self.known_metrics()
            fam = f"{self.family} " if self.family else ""
            for i, name in enumerate(mon_metrics):
                if not isinstance(name, str) or not name or name in known or name in defined:
                    continue
                self.add(
                    ("monitoring", "metrics", i),
                    f"monitoring metric '{name}' is neither a known {fam}metric ({', '.join(known)}) "
                    "nor defined in evaluation.metrics",
                )
        alerts = mon.get("alerts")
        if isinstance(alerts, dict) and alerts:
            self.check_alerts(alerts)

    def check_alerts(self, alerts: dict) -> None:
        allowed = alert_rules.allowed_names(self.m, self.family)
        for name, alert in alerts.items():
            path: Path_ = ("monitoring", "alerts", name, "condition")
            if not isinstance(alert, dict):
                continue
            text = alert.get("condition")
            if not isinstance(text, str) or not text.strip() or not self.clean(path):
                continue
            try:
                cond = alert_rules.parse_condition(text)
            except alert_rules.ConditionError as exc:
                self.add(path, f"alert '{name}': 'condition' {text!r} is not a valid condition: {exc}")
                continue
            unknown = cond.unknown_names(allowed)
            if unknown:
                self.add(
                    path,
                    f"alert '{name}': 'condition' uses unknown name{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(repr(u) for u in unknown)}; {_allowed_hint(unknown, allowed)}",
                )

    # -- retraining
    def check_retraining(self) -> None:
        section = self.section("retraining")
        if not section:
            return
        triggers = section.get("triggers")
        if isinstance(triggers, dict):
            self.check_cron(("retraining", "triggers", "schedule"), triggers.get("schedule"))
            alerts = triggers.get("alerts")
            if isinstance(alerts, list):
                self.check_retrain_alerts(alerts)
        for key, parse in (("cooldown", retraining.parse_duration), ("window", retraining.parse_window)):
            value = section.get(key)
            if isinstance(value, str) and self.clean(("retraining", key)):
                try:
                    parse(value)
                except ValueError as exc:
                    self.add(("retraining", key), f"'{key}' {exc}")
        promotion = section.get("promotion")
        path = ("retraining", "promotion", "min_improvement")
        if (
            isinstance(promotion, dict)
            and promotion.get("mode") == "manual"
            and "min_improvement" in promotion
            and self.clean(path)
        ):
            self.add(
                path,
                "'min_improvement' applies only to automatic promotion: remove it, or set "
                "'mode' to 'auto' to promote a challenger that is better by that much",
            )

    def check_retrain_alerts(self, names: list) -> None:
        """Each name is an alert of monitoring.alerts of this manifest, listed once."""
        defined = self.section("monitoring").get("alerts")
        known = sorted(defined) if isinstance(defined, dict) else []
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            path: Path_ = ("retraining", "triggers", "alerts", i)
            if not isinstance(name, str) or not name or not self.clean(path):
                continue  # the schema reported it
            if name in seen:
                self.add(
                    path,
                    f"alert '{name}' is listed more than once in 'alerts' (item {seen[name]} already names it)",
                )
                continue
            seen[name] = i
            if name in known:
                continue
            if not known:
                self.add(
                    path,
                    f"alert '{name}' is not defined: monitoring.alerts defines no alerts; "
                    "define it there (a condition and a severity) to retrain when it fires",
                )
                continue
            self.add(
                path,
                f"alert '{name}' is not defined in monitoring.alerts; {_allowed_hint([name], set(known))}",
            )


def _allowed_hint(unknown: list[str], allowed: set[str], limit: int = 15) -> str:
    """'did you mean ...' for close names, then the allowed names (at most ``limit``)."""
    names = sorted(allowed)
    close = list(
        dict.fromkeys(c for u in unknown for c in difflib.get_close_matches(u, names, n=1, cutoff=0.7))
    )
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"{hint}allowed: {shown}"


# --------------------------------------------------------------------------- entry point


def _sort_key(item: tuple[Path_, str]) -> int:
    path = item[0]
    if not path:
        return -1
    return SECTIONS.index(path[0]) if path[0] in SECTIONS else len(SECTIONS)


def validate_manifest(
    manifest: Any,
    *,
    family: str | None = None,
    level: str | None = None,
    path_prefix: str = "",
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[dict]:
    """All problems of a manifest as [{"path": JSON pointer, "message": str}]; [] = valid.

    ``family``/``level`` are the recipe's; when given, metadata must agree and metric names
    are checked against that family (otherwise against metadata.model_family).
    ``path_prefix`` (e.g. "/manifest") is put in front of every path. A manifest nested
    deeper than ``max_depth`` (the JSON_MAX_DEPTH setting) gets that one error and no
    further checks: the schema validator, deepcopy and the diff would recurse past Python's
    limit (a stage `config` 900 levels deep was a 500).
    """
    if not isinstance(manifest, dict):
        return [
            ManifestError(
                pointer((), path_prefix), f"the manifest must be a JSON object, got {_describe(manifest)}"
            ).to_dict()
        ]
    too_deep = too_deep_in_value(manifest, max_depth)
    if too_deep is not None:
        return [ManifestError(path_prefix.rstrip("/") + too_deep, depth_message(max_depth)).to_dict()]
    schema_errors = _schema_errors(manifest)
    checker = _Checker(manifest, family, level, [p for p, _ in schema_errors])
    found = sorted(schema_errors, key=_sort_key) + sorted(checker.run(), key=_sort_key)
    # Schema errors first within each section, then semantic ones; stable otherwise.
    found.sort(key=_sort_key)
    seen: set[tuple[str, str]] = set()
    out: list[dict] = []
    for path, message in found:
        key = (pointer(path, path_prefix), message)
        if key not in seen:
            seen.add(key)
            out.append(ManifestError(*key).to_dict())
    return out

"""Recipe lineage on plain JSON: semantic diff with semver classification, three-way merge,
and field provenance along a baseline → industry → client chain.

Plain Python (no Django import), so it is tested on its own and benchmarked on large
manifests. Paths are JSON pointers (RFC 6901) in which list elements are addressed by
identity, never by position:

* a list of objects that all have a distinct string ``name`` (pipeline stages) is keyed by
  that name: ``/pipeline/stages/train/config/algorithm``; the order of its elements counts;
* a list of distinct scalars (feature sets, grain, labels, monitored features) is a set:
  ``/requirements/feature_sets/required/cost`` is the element ``"cost"``; order is ignored;
* any other list is one value.

``metadata.id/name/level/version/model_family`` identify a version rather than describe it
(the services rewrite them for every version), so diff, merge and provenance leave them out.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from .manifest import parse_min_history, parse_semver, pointer
from .retraining import DEFAULT_PROMOTION

IDENTITY_FIELDS = frozenset({"id", "name", "level", "version", "model_family"})
BUMPS = ("patch", "minor", "major")
_RANK = {None: 0, "patch": 1, "minor": 2, "major": 3}


class _Missing:
    """An absent key (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict) -> _Missing:
        return self


MISSING: Any = _Missing()
Tokens = tuple[str, ...]


# --------------------------------------------------------------------------- equality and list kinds


def same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0 but true != 1; MISSING equals only MISSING."""
    if a is b:
        return True
    # Python's == (in C) is looser only where true/false meet 1/0, so a False from it is
    # final and most unequal subtrees are settled without walking them in Python.
    if a != b:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, dict):
        return all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)))


def _scalar_key(value: Any) -> str | None:
    """The identity of a set element: its text as it appears in a path ("1" for 1 and "1"), or None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))
    return None


def _named(items: list) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or item["name"] in out:
            return None
        out[item["name"]] = item
    return out


def _scalars(items: list) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        key = _scalar_key(item)
        if key is None or key in out:
            return None
        out[key] = item
    return out


def _keyed(*lists: Any) -> tuple[str, list[dict[str, Any]]] | None:
    """("named"|"set", [mapping per list]) when every given list is keyed the same way (an
    empty list fits either kind); None when they are compared as whole values."""
    present = [lst for lst in lists if lst is not MISSING]
    if not all(isinstance(lst, list) for lst in present):
        return None
    for kind, keyer in (("named", _named), ("set", _scalars)):
        maps = [keyer(lst) for lst in present]
        if all(m is not None for m in maps) and any(present):
            it = iter(maps)
            return kind, [next(it) if lst is not MISSING else {} for lst in lists]
    return None


def _content(manifest: Any) -> Any:
    """The manifest without its identity metadata (a shallow copy; the input is untouched)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("metadata"), dict):
        return manifest
    out = dict(manifest)
    out["metadata"] = {k: v for k, v in manifest["metadata"].items() if k not in IDENTITY_FIELDS}
    return out


# --------------------------------------------------------------------------- diff


def diff(old: Any, new: Any) -> list[dict]:
    """Every change from `old` to `new`: [{"path", "op": "add"|"remove"|"change", "old", "new",
    "bump", "reason"}] in document order. A reordering of named list elements is one
    "change" at the list's path whose old/new are the name orders."""
    out: list[dict] = []
    _diff(_content(old), _content(new), (), out)
    return out


def _emit(out: list[dict], tokens: Tokens, op: str, old: Any, new: Any) -> None:
    bump, reason = classify(tokens, op, old, new)
    out.append(
        {
            "path": pointer(tokens),
            "op": op,
            "old": None if old is MISSING else old,
            "new": None if new is MISSING else new,
            "bump": bump,
            "reason": reason,
        }
    )


def _diff(a: Any, b: Any, tokens: Tokens, out: list[dict]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        ma, mb = a, b
    else:
        keyed = _keyed(a, b) if isinstance(a, list) and isinstance(b, list) else None
        if keyed is None:
            if not same(a, b):
                _emit(out, tokens, "change", a, b)
            return
        kind, (ma, mb) = keyed
        if kind == "named" and [n for n in ma if n in mb] != [n for n in mb if n in ma]:
            _emit(out, tokens, "change", list(ma), list(mb))
    # Objects by key, keyed lists by identity: the same walk.
    for k, v in ma.items():
        if k in mb:
            _diff(v, mb[k], (*tokens, k), out)
        else:
            _emit(out, (*tokens, k), "remove", v, MISSING)
    for k, v in mb.items():
        if k not in ma:
            _emit(out, (*tokens, k), "add", MISSING, v)


# --------------------------------------------------------------------------- classification

_DAYS = {"days": 1.0, "weeks": 7.0, "months": 30.44, "years": 365.25}


def _history(value: Any) -> tuple[float, str] | None:
    try:
        parsed = parse_min_history(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    amount, unit = parsed
    return (amount * _DAYS[unit], "days") if unit in _DAYS else (float(amount), unit)


def _min_history_bump(op: str, old: Any, new: Any) -> tuple[str, str]:
    before, after = _history(None if old is MISSING else old), _history(None if new is MISSING else new)
    if after is None:
        return "minor", "min_history loosened (no minimum any more)"
    if before is None or before[1] != after[1]:
        return "major", "min_history tightened (a minimum history is now required)"
    if after[0] > before[0]:
        return "major", "min_history tightened (more history required)"
    return "minor", "min_history loosened (less history required)"


def classify(tokens: Tokens, op: str, old: Any = None, new: Any = None) -> tuple[str, str]:
    """(bump, reason) for one change at `tokens`.

    major: removed or renamed required feature sets (and new ones: tightened requirements),
    changed grain or labels, removed pipeline stages (but the explain stage: minor), more
    history required;
    minor: new optional feature sets, new stages, metrics or alerts, changed algorithm or
    thresholds, a retraining policy or trigger added or removed, a changed promotion mode —
    and anything not listed, to be safe;
    patch: descriptions, tags, the name, settings inside a stage config (hyperparameters, the
    training stage's tuning section, the explain stage's settings), the schedule, the retraining schedule, row count,
    cooldown, window and min_improvement.
    """
    t = tokens
    last = t[-1] if t else ""
    if last in ("description", "tags"):
        return "patch", f"{last} edited"
    section = t[0] if t else ""
    if section == "metadata":
        return "patch", "metadata edited"
    if section == "requirements":
        return _classify_requirements(t, op, old, new)
    if t[:2] == ("pipeline", "stages"):
        return _classify_stage(t, op, old, new)
    if t[:2] == ("evaluation", "metrics"):
        if len(t) == 3:
            return "minor", "new metric" if op == "add" else (
                "metric removed" if op == "remove" else "metric changed"
            )
        return "minor", f"metric {t[2]} threshold changed"
    if t[:2] == ("monitoring", "alerts"):
        if len(t) == 3:
            return "minor", "new alert" if op == "add" else (
                "alert removed" if op == "remove" else "alert changed"
            )
        return "minor", f"alert {t[2]} threshold changed"
    if t == ("deployment", "schedule"):
        return "patch", "schedule changed"
    if section == "retraining":
        return _classify_retraining(t, op, old, new)
    if section == "tags":
        return "patch", "tags edited"
    return "minor", f"{pointer(t[:2]) or 'manifest'} changed"


def _classify_requirements(t: Tokens, op: str, old: Any, new: Any) -> tuple[str, str]:
    if t[1:3] == ("feature_sets", "required"):
        if len(t) == 4 and op == "add":
            return "major", f"new required feature set '{t[3]}' (tightened requirements)"
        if len(t) == 4 and op == "remove":
            return "major", f"required feature set '{t[3]}' removed or renamed"
        return "major", "required feature sets changed"
    if t[1:3] == ("feature_sets", "optional"):
        if op == "remove" and len(t) == 4:
            return "minor", f"optional feature set '{t[3]}' removed"
        return "minor", "new optional feature set" if len(t) == 4 else "optional feature sets changed"
    if t[1:2] == ("grain",):
        return "major", "grain changed"
    if t[1:2] == ("labels",):
        return "major", "labels changed"
    if t[1:2] == ("min_history",):
        return _min_history_bump(op, old, new)
    return "major", "requirements changed"


def _classify_retraining(t: Tokens, op: str, old: Any, new: Any) -> tuple[str, str]:
    """What starts a retrain and whether a challenger replaces the champion by itself are
    minor (they change what the workspace does on its own); tuning them is a patch."""
    verb = {"add": "added", "remove": "removed"}.get(op, "changed")
    if len(t) == 1:
        return "minor", f"retraining policy {verb}"
    key = t[1]
    if key == "triggers":
        if len(t) == 2:
            return "minor", f"retraining triggers {verb}"
        trigger = t[2]
        if trigger == "alerts":
            if len(t) == 4:
                return "minor", f"retraining on alert '{t[3]}' {verb}"
            return "minor", f"retraining alert triggers {verb}"
        # A schedule going from or to null adds or removes that trigger.
        was, now = old not in (None, MISSING), new not in (None, MISSING)
        if len(t) == 3 and was != now:
            return "minor", f"retraining trigger '{trigger}' {'added' if now else 'removed'}"
        return "patch", f"retraining trigger '{trigger}' changed"
    if key == "promotion":
        if len(t) == 2 or t[2] == "mode":
            before, after = _promotion_mode(t, old), _promotion_mode(t, new)
            if before == after:
                return "patch", "promotion settings changed"
            return "minor", f"promotion mode changed ({before} → {after})"
        return "patch", f"promotion {t[2]} changed"
    if key in ("cooldown", "window"):
        return "patch", f"retraining {key} changed"
    return "minor", f"retraining {key} {verb}"


def _promotion_mode(t: Tokens, value: Any) -> str:
    """The promotion mode a diff side stands for: manual when the block or mode is absent."""
    if len(t) == 2:
        value = value.get("mode") if isinstance(value, dict) else MISSING
    return value if isinstance(value, str) else DEFAULT_PROMOTION


def _classify_stage(t: Tokens, op: str, old: Any = None, new: Any = None) -> tuple[str, str]:
    if len(t) == 2:
        return "minor", "pipeline stage order changed"
    name = t[2]
    if len(t) == 3:
        if op == "add":
            return "minor", f"new stage '{name}'"
        if isinstance(old, dict) and old.get("type") == "explain":
            # The model, its inputs and its predictions are unchanged: only its explanations go.
            return "minor", f"explain stage '{name}' removed (the model is unchanged)"
        return "major", f"stage '{name}' removed"
    if t[3] == "type":
        return "minor", f"stage '{name}' type changed"
    if t[3] == "config" and len(t) >= 5 and t[4] == "algorithm":
        return "minor", f"stage '{name}' algorithm changed"
    if t[3] == "config" and len(t) >= 5 and t[4] == "tuning":
        # What a tune run searches; a train run of the version trains the same model.
        return "patch", f"stage '{name}' tuning {'section' if len(t) == 5 else t[5]} changed"
    # Every other setting inside a stage's config is a patch; so is the explain stage's whole
    # config (recipes.explain_config: sample sizes, methods, metric, seed): it changes what is
    # said about the model, never the model (the config has no 'algorithm' key).
    return "patch", f"stage '{name}' setting tweaked"


def summarize(changes: list[dict]) -> dict:
    """{"suggested_bump", "added", "removed", "changed", "by_bump": {...}} of a diff."""
    suggested = None
    for c in changes:
        if _RANK[c["bump"]] > _RANK[suggested]:
            suggested = c["bump"]
    return {
        "suggested_bump": suggested,
        "added": sum(c["op"] == "add" for c in changes),
        "removed": sum(c["op"] == "remove" for c in changes),
        "changed": sum(c["op"] == "change" for c in changes),
        "by_bump": {b: sum(c["bump"] == b for c in changes) for b in BUMPS},
    }


def semantic_diff(old: Any, new: Any) -> dict:
    """The diff with its summary: {"changes": [...], "suggested_bump", "added", ...}."""
    changes = diff(old, new)
    return {"changes": changes, **summarize(changes)}


def implied_bump(latest: str, version: str) -> str:
    """Which part a new version number bumps: implied_bump('1.2.3', '2.0.0') == 'major'."""
    a, b = parse_semver(latest), parse_semver(version)
    if b[0] > a[0]:
        return "major"
    if b[0] == a[0] and b[1] > a[1]:
        return "minor"
    return "patch"


def bump_rank(bump: str | None) -> int:
    return _RANK[bump]


# --------------------------------------------------------------------------- three-way merge


@dataclass
class MergeResult:
    """`manifest` is the merge (ours where a conflict is unresolved); `conflicts` lists every
    path both sides changed differently: {"path", "base", "ours", "theirs"} (None for an
    absent value, with "base_present"/"ours_present"/"theirs_present" to tell it from null);
    `resolved` the conflicts a resolution settled; `unused` resolutions that named no conflict."""

    manifest: Any
    conflicts: list[dict] = field(default_factory=list)
    resolved: list[dict] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.conflicts


def merge3(base: Any, ours: Any, theirs: Any, resolutions: dict[str, Any] | None = None) -> MergeResult:
    """Three-way merge of manifests: take each side's changes from `base`; where the same path
    changed on both sides to different values it is a conflict, settled by
    ``resolutions[path]``: "ours", "theirs" or {"value": v}. Identity metadata is ours."""
    merger = _Merger(resolutions or {})
    merged = merger.merge(_content(base), _content(ours), _content(theirs), ())
    if isinstance(merged, dict) and isinstance(ours, dict) and isinstance(ours.get("metadata"), dict):
        meta = merged.setdefault("metadata", {})
        merged["metadata"] = {**{k: v for k, v in ours["metadata"].items() if k in IDENTITY_FIELDS}, **meta}
    # A JSON round trip copies (so the result shares nothing with the inputs) faster than deepcopy.
    merger.result.manifest = json.loads(json.dumps(merged)) if merged is not MISSING else None
    merger.result.unused = sorted(set(merger.resolutions) - merger.used)
    return merger.result


class _Merger:
    def __init__(self, resolutions: dict[str, Any]):
        self.resolutions = resolutions
        self.used: set[str] = set()
        self.result = MergeResult(manifest=None)

    def merge(self, b: Any, o: Any, t: Any, tokens: Tokens) -> Any:
        if same(o, t) or same(b, t):
            return o
        if same(b, o):
            return t
        if isinstance(o, dict) and isinstance(t, dict) and (b is MISSING or isinstance(b, dict)):
            bb = b if isinstance(b, dict) else {}
            out = {}
            for k in [*o, *(k for k in t if k not in o)]:
                v = self.merge(bb.get(k, MISSING), o.get(k, MISSING), t.get(k, MISSING), (*tokens, k))
                if v is not MISSING:
                    out[k] = v
            return out
        if isinstance(o, list) and isinstance(t, list) and (b is MISSING or isinstance(b, list)):
            keyed = _keyed(b, o, t)
            if keyed is not None:
                kind, (mb, mo, mt) = keyed
                return self.merge_keyed(kind, mb, mo, mt, tokens)
        return self.conflict(tokens, b, o, t)

    def merge_keyed(self, kind: str, mb: dict, mo: dict, mt: dict, tokens: Tokens) -> list:
        values: dict[str, Any] = {}
        for k in [*mo, *(k for k in mt if k not in mo)]:
            if kind == "set":
                # Sets: an element is in the merge unless one side removed it; adds never clash.
                removed = k in mb and (k not in mo or k not in mt)
                if not removed:
                    values[k] = mo.get(k, mt.get(k))
                continue
            v = self.merge(mb.get(k, MISSING), mo.get(k, MISSING), mt.get(k, MISSING), (*tokens, k))
            if v is not MISSING:
                values[k] = v
        if kind == "set":
            return list(values.values())
        return [values[k] for k in self.order(list(mb), list(mo), list(mt), set(values), tokens)]

    def order(self, nb: list, no: list, nt: list, keep: set, tokens: Tokens) -> list:
        """Names in merged order: the side that reordered the shared elements sets the order;
        each side's new elements go right after the element they follow on that side."""
        shared = set(nb) & set(no) & set(nt)
        cb, co, ct = ([n for n in names if n in shared] for names in (nb, no, nt))
        skeleton = no
        if co == cb and ct != cb:
            skeleton = nt
        elif co != cb and ct != cb and co != ct:
            choice = self.conflict(tokens, cb, co, ct, order=True)
            skeleton = [n for n in choice if isinstance(n, str)] if isinstance(choice, list) else no
        out = list(dict.fromkeys(n for n in skeleton if n in keep))
        placed = set(out)
        for side in (no, nt):
            missing = [(i, n) for i, n in enumerate(side) if n in keep and n not in placed]
            for i, n in missing:
                before = next((p for p in reversed(side[:i]) if p in placed), None)
                out.insert(out.index(before) + 1 if before is not None else 0, n)
                placed.add(n)
        return out

    def conflict(self, tokens: Tokens, b: Any, o: Any, t: Any, order: bool = False) -> Any:
        path = pointer(tokens)
        entry = {
            "path": path,
            "base": None if b is MISSING else b,
            "ours": None if o is MISSING else o,
            "theirs": None if t is MISSING else t,
            "base_present": b is not MISSING,
            "ours_present": o is not MISSING,
            "theirs_present": t is not MISSING,
        }
        if order:
            entry["order"] = True
        if path not in self.resolutions:
            self.result.conflicts.append(entry)
            return o
        self.used.add(path)
        choice = self.resolutions[path]
        if choice == "ours":
            value = o
        elif choice == "theirs":
            value = t
        else:
            value = choice["value"]
        self.result.resolved.append({**entry, "resolution": choice})
        return copy.deepcopy(value)


def resolution_path(path: str) -> str:
    """Where a resolution for `path` sits in a request body, as a JSON pointer."""
    return "/resolutions/" + path.replace("~", "~0").replace("/", "~1")


def check_resolutions(resolutions: Any) -> list[dict]:
    """Problems with a resolutions object: [{"path", "message"}] (paths under /resolutions)."""
    if resolutions is None:
        return []
    if not isinstance(resolutions, dict):
        return [
            {
                "path": "/resolutions",
                "message": 'must be an object {"<json pointer>": "ours"|"theirs"|{"value": …}}',
            }
        ]
    errors = []
    for path, choice in resolutions.items():
        where = resolution_path(path)
        if not (path == "" or path.startswith("/")):
            errors.append(
                {"path": where, "message": "the key must be a JSON pointer such as /requirements/grain"}
            )
        elif not (choice in ("ours", "theirs") or (isinstance(choice, dict) and set(choice) == {"value"})):
            errors.append(
                {"path": where, "message": 'must be "ours", "theirs" or {"value": <the merged value>}'}
            )
    return errors


# --------------------------------------------------------------------------- provenance


def leaves(manifest: Any) -> dict[str, Any]:
    """Every leaf of a manifest by path (identity metadata left out). A set element's value is
    the element; empty objects and lists, and lists compared whole, are leaves themselves."""
    out: dict[str, Any] = {}
    _leaves(_content(manifest), (), out)
    return out


def _leaves(value: Any, tokens: Tokens, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _leaves(v, (*tokens, k), out)
        return
    if isinstance(value, list) and value:
        keyed = _keyed(value)
        if keyed is not None:
            for k, v in keyed[1][0].items():
                _leaves(v, (*tokens, k), out)
            return
    out[pointer(tokens)] = value


def provenance(chain: list[tuple[str, Any]]) -> dict:
    """Where each leaf of the last manifest in `chain` comes from.

    `chain` is [(recipe_id, manifest), ...] root first; each manifest is the version the next
    recipe was derived from, the last is the recipe's own current manifest. Returns
    {"fields": [{"path", "value", "source": "own"|"inherited"|"overridden", "from",
    "ancestor_value"}], "removed": [{"path", "ancestor_value", "from"}]}: "inherited" names the
    ancestor that set the value (the highest one it is unchanged from); "overridden" names the
    parent whose value this recipe replaced; "removed" lists the parent's leaves it dropped.
    """
    flats = [(rid, leaves(m)) for rid, m in chain]
    own_id, mine = flats[-1]
    ancestors = flats[:-1]
    fields = []
    for path, value in mine.items():
        entry = {"path": path, "value": value, "source": "own", "from": own_id, "ancestor_value": None}
        if ancestors and path in ancestors[-1][1]:
            parent_id, parent = ancestors[-1]
            if same(parent[path], value):
                origin = parent_id
                for rid, flat in reversed(ancestors[:-1]):
                    if path not in flat or not same(flat[path], value):
                        break
                    origin = rid
                entry.update(source="inherited", **{"from": origin})
            else:
                entry.update(source="overridden", ancestor_value=parent[path], **{"from": parent_id})
        fields.append(entry)
    removed = []
    if ancestors:
        parent_id, parent = ancestors[-1]
        removed = [
            {"path": p, "ancestor_value": v, "from": parent_id} for p, v in parent.items() if p not in mine
        ]
    return {"fields": fields, "removed": removed}

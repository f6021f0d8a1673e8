"""Results as data: a folder of small JSON files (``docs/results`` when committed) that campaigns write as evaluations
finish, reuse instead of training and evaluating again, and that ``fope report`` rebuilds ``docs/results.md`` from.

    RESULTS/runs/<run>.json   one run: its resolved config (and its sha256), a summary of the model, and every
                              evaluation stored for it (perplexity, perplexity-<text>, passkey), each with the
                              settings it was computed with, its numbers by length, the checkpoint, date and code
    RESULTS/<recipe>.json     one recipe (demo, ablation, ...): its reports, each with its runs and contrasts
    RESULTS/notes.md          hand-written text ``fope report`` puts at the top of the page (optional)
    RESULTS/<recipe>.md       hand-written verdict of one recipe, put under its section (optional); both .md files
                              are copied into the page as written: their links are relative to the page
    RESULTS/figures/*.png     drawn by ``fope report``

Runs are shared between recipes as in a campaign's ``OUT/runs``: one file per run, one copy of each number. Paths
inside the campaign's output folder are written as ``$OUT/...`` (``portable``), so that a file written on one machine
matches the same campaign on another. Nothing here trains, evaluates or loads a model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fope.evaluate.results import PASSKEY, PERPLEXITY
from fope.files import write_atomic
from fope.report.checks import check_recipe_record, check_run_record
from fope.report.load import ReportError, RunResults

#: The version of the files' layout; a file of another version is refused with the one it has.
FORMAT = 1
RUNS = "runs"
FIGURES = "figures"
NOTES = "notes.md"
#: Marks a path inside the campaign's output folder.
OUT_MARKER = "$OUT"
#: Parts of an evaluator's output not stored: the run summary (stored once per run), the per-trial dump of passkey,
#: machine paths and timings.
DROPPED = frozenset({"run", "trials", "data_path"})


def run_file(root: str | Path, name: str) -> Path:
    """``RESULTS/runs/<name>.json``."""
    return Path(root) / RUNS / f"{name}.json"


def recipe_file(root: str | Path, experiment: str) -> Path:
    """``RESULTS/<experiment>.json``."""
    return Path(root) / f"{experiment}.json"


def portable(value: Any, out: str | Path) -> Any:
    """``value`` with every string that is a path inside ``out`` (resolved) written as ``$OUT/...``."""
    prefix = str(Path(out).resolve())
    if isinstance(value, str):
        if value == prefix or value.startswith(prefix + "/"):
            return OUT_MARKER + value[len(prefix) :]
        return value
    if isinstance(value, Mapping):
        return {key: portable(item, out) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, out) for item in value]
    return value


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of a config mapping written as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def trimmed(result: Mapping[str, Any], out: str | Path) -> dict[str, Any]:
    """An evaluator's output without ``DROPPED`` and per-length timings, paths made ``portable``."""
    kept = {key: value for key, value in result.items() if key not in DROPPED}
    for key in ("results", "by_length"):
        if isinstance(kept.get(key), list):
            kept[key] = [{k: v for k, v in row.items() if k != "seconds"} for row in kept[key]]
    return portable(kept, out)


def evaluation_entry(
    result: Mapping[str, Any],
    settings: Mapping[str, Any],
    out: str | Path,
    *,
    checkpoint: Mapping[str, Any] | None = None,
    evaluated: str | None = None,
    code: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One stored evaluation: the ``settings`` a campaign matches on, the trimmed result, and where it comes from
    (``checkpoint``: step and weights sha256; ``evaluated``: an ISO date; ``code``: ``fope.provenance.provenance``)."""
    return {
        "settings": dict(settings),
        "checkpoint": None if checkpoint is None else dict(checkpoint),
        "evaluated": evaluated,
        **dict(code or {}),
        "result": trimmed(result, out),
    }


def run_record(
    name: str, config: Mapping[str, Any], summary: Mapping[str, Any], evaluations: Mapping[str, Any]
) -> dict[str, Any]:
    """A run's file: ``config`` (portable, resolved), its sha256, the model ``summary`` (``run_summary`` without the
    machine path) and ``evaluations`` by result name."""
    return {
        "format": FORMAT,
        "run": name,
        "label": summary.get("label", name),
        "config_sha256": config_sha256(config),
        "config": dict(config),
        "summary": {key: value for key, value in summary.items() if key != "path"},
        "evaluations": {key: evaluations[key] for key in sorted(evaluations)},
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """``data`` as indented JSON with sorted keys (the same data gives the same bytes), written atomically."""
    return write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: str | Path, kind: str) -> dict[str, Any] | None:
    """A stored file of ``kind`` (``run`` or ``recipe``), None when absent; a one-line error when it is not one, or
    when a field a report reads is missing, of another type or out of range (``fope.report.checks``)."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise ReportError(f"{path} is a folder where a stored {kind} file belongs: move it out of the results folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"cannot read stored results {path}: {error}") from error
    keys = {"run": ("config", "summary", "evaluations"), "recipe": ("experiment", "reports")}[kind]
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise ReportError(f"{path} is not a stored {kind} file: it must be a mapping with {list(keys)}")
    if data.get("format") != FORMAT:
        raise ReportError(f"{path} has format {data.get('format')!r}; this fope reads format {FORMAT}")
    (check_run_record if kind == "run" else check_recipe_record)(data, path)  # every field a report reads
    return data


def read_run(root: str | Path, name: str) -> dict[str, Any] | None:
    return read_json(run_file(root, name), "run")


def read_recipes(root: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``RESULTS/<recipe>.json`` by recipe name, in name order."""
    return {path.stem: read_json(path, "recipe") for path in sorted(Path(root).glob("*.json"))}


def merged_recipe(old: Mapping[str, Any] | None, experiment: str, reports: Sequence[Mapping[str, Any]]) -> dict:
    """A recipe file with ``reports`` added to ``old``'s: a report already there keeps its runs and gains the new
    ones (runs are only ever added: a campaign with other seeds extends the recipe), and takes the new title,
    evaluation and contrasts."""
    merged = {report["folder"]: dict(report) for report in (old or {}).get("reports", [])}
    for report in reports:
        known = merged.get(report["folder"], {}).get("runs", [])
        merged[report["folder"]] = {**report, "runs": list(dict.fromkeys([*known, *report["runs"]]))}
    return {"format": FORMAT, "experiment": experiment, "reports": list(merged.values())}


def _checkpoints(record: Mapping[str, Any]) -> list[str]:
    entries = record["evaluations"].values()
    return sorted({entry["checkpoint"]["sha256"] for entry in entries if (entry.get("checkpoint") or {}).get("sha256")})


def stored_run_results(record: Mapping[str, Any], path: str | Path, evaluation: str = PERPLEXITY) -> RunResults:
    """A stored run as a report's ``RunResults``: the perplexity result named ``evaluation`` (``perplexity`` or
    ``perplexity-<text>``) and passkey, None where the file holds none; ``path`` is shown as the run's place."""
    summary = {**record["summary"], "path": str(path)}

    def result(key: str) -> dict[str, Any] | None:
        entry = record["evaluations"].get(key)
        return None if entry is None else {"run": summary, **entry["result"]}

    perplexity, passkey = result(evaluation), result(PASSKEY)
    missing = [kind for kind, found in ((PERPLEXITY, perplexity), (PASSKEY, passkey)) if found is None]
    notes = []
    if len(_checkpoints(record)) > 1:
        notes.append(f"the stored evaluations of {record['run']} come from different checkpoints (trained twice?)")
    label = summary.get("label", record["run"])
    return RunResults(Path(path), label, summary, perplexity, passkey, notes, missing, stored=True)

"""The one-command demo: train tiny models that differ only in position encoding, evaluate them past their training
length, and write the report.

Runs are ordinary run directories (``OUT/runs/<encoding>-s<seed>``) that ``fope eval``, ``fope passkey`` and
``fope compare`` accept. The demo is a campaign (``fope.campaign``): training and evaluation run in parallel worker
processes (one torch thread each), finished runs and evaluations are reused, unfinished runs resumed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fope.campaign import (
    TINY_PASSKEY_FRACTION,
    Campaign,
    ReportSpec,
    RunSpec,
    assignment,
    run_campaign,
)
from fope.report import key_table

DEFAULT_ENCODINGS = ("rope", "fope", "alibi", "nope")
#: Preset directory of a source checkout (the demo's configs are the tiny presets).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "tiny"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo will do; ``quick`` shrinks everything to a smoke run of a few minutes."""

    encodings: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    passkey_fraction: float
    passkey_trials: int
    max_spans: int
    jobs: int
    quick: bool

    @classmethod
    def make(
        cls,
        *,
        quick: bool = False,
        encodings: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        steps: int | None = None,
        jobs: int | None = None,
    ) -> DemoPlan:
        encodings = tuple(encodings or DEFAULT_ENCODINGS)
        missing = [name for name in encodings if not (CONFIG_DIR / f"{name}.yaml").is_file()]
        if missing:
            available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ValueError(f"no tiny preset for {missing} in {CONFIG_DIR}; available: {available}")
        return cls(
            encodings=encodings,
            seeds=tuple(seeds or (0,)),
            steps=steps or (60 if quick else 600),
            passkey_fraction=TINY_PASSKEY_FRACTION,
            passkey_trials=4 if quick else 20,
            max_spans=4 if quick else 24,
            jobs=jobs or max(1, min(2, os.cpu_count() or 1)),
            quick=quick,
        )

    def run_names(self) -> list[tuple[str, int, str]]:
        return [(name, seed, f"{name}-s{seed}") for seed in self.seeds for name in self.encodings]

    def campaign(self) -> Campaign:
        """The demo as a campaign: one run per (encoding, seed) from the tiny presets, one report with attention."""
        specs = []
        for encoding, seed, name in self.run_names():
            values = {
                "train.max_steps": self.steps,
                "train.seed": seed,
                "train.threads": 1,
                "train.checkpoint_every": self.steps,
                "train.eval_every": self.steps,
                "data.passkey_fraction": self.passkey_fraction,
            }
            items = tuple(assignment(key, value) for key, value in values.items())
            specs.append(RunSpec(name, CONFIG_DIR / f"{encoding}.yaml", items))
        title = "fope demo: length generalization of tiny models" + (" (quick)" if self.quick else "")
        report = ReportSpec("report", title, tuple(spec.name for spec in specs), attention=True)
        return Campaign(tuple(specs), (report,), self.max_spans, self.passkey_trials, self.jobs)


def run_demo(plan: DemoPlan, out: str | Path = "demo-output", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare the default corpus, train, evaluate and report; return the aggregated results."""
    out = Path(out)
    started = time.perf_counter()
    campaign = plan.campaign()
    log(
        f"training {len(plan.run_names())} runs ({', '.join(plan.encodings)} x seeds {list(plan.seeds)}), "
        f"{plan.steps} steps each, {plan.jobs} at a time"
    )
    results = run_campaign(campaign, out, log=log)["report"]
    minutes = (time.perf_counter() - started) / 60
    (out / "demo.json").write_text(json.dumps({"plan": asdict(plan), "minutes": minutes}, indent=2))
    log("")
    log(key_table(results))
    log(f"\nreport: {out / 'report' / 'report.md'}  ({minutes:.1f} min)")
    return results

"""``fope experiment cross-domain``: train on some sources of the corpus, evaluate perplexity on other text."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.errors import CampaignError
from fope.evaluate.results import PERPLEXITY, results_name
from fope.experiments.baselines import SIZE_HELP
from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option
from fope.report import by_length, spread_text, text_table
from fope.report.summaries import contrast_lines, groups_of, lengths, ranking, summary

NAME = "cross-domain"
ARMS = ("rope", "fope", "alibi")


@dataclass(frozen=True)
class Options:
    size: str | None = option(SIZE_HELP)
    encodings: tuple[str, ...] | None = option(f"arms (default {','.join(ARMS)})")
    train_sources: tuple[str, ...] | None = option("train on these sources only (default corpus: shakespeare)")
    eval_data: str | None = option("evaluate on this text: folder of .txt, .txt or .jsonl (default: the Bible books)")


def export_source(source: str, directory: Path) -> str:
    """Write the default corpus's documents of ``source`` as one ``.txt`` per document (once) to ``directory``."""
    if not (directory.is_dir() and any(directory.glob("*.txt"))):
        from fope.data.corpus import default_corpus, select_sources
        from fope.data.prepare import default_cache_dir

        documents = select_sources(default_corpus(default_cache_dir()), [source])
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            for document in documents:
                (staging / f"{document.name.split('/', 1)[-1]}.txt").write_text(document.text, encoding="utf-8")
            if directory.exists():
                directory.rmdir()
            staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return f"evaluation text: the {source} documents of the default corpus in {directory}"


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """Train on some sources of the corpus, evaluate perplexity on other text (default: the Bible, exported).

    With the default corpus the defaults train on Shakespeare only (``data.sources``: the other sources never enter
    training) and evaluate on the King James Bible, written to ``OUT/eval-data/bible`` as one text file per book.
    """
    size = settings.size(options.size)
    arms = tuple(options.encodings or ARMS)
    default_corpus = make_run(settings, size, arms[0], settings.seeds[0]).config.data.source == "default"
    train_sources, eval_data, prepare, notes = options.train_sources, options.eval_data, None, ()
    named = f"the text at {Path(eval_data).name}" if eval_data is not None else "the King James Bible (bible source)"
    if train_sources is None and default_corpus:
        train_sources = ("shakespeare",)
    if eval_data is None:
        if not default_corpus or "bible" in train_sources:
            raise CampaignError(
                "cross-domain needs --eval-data DIR (text of another domain than the training text) unless it trains "
                "on the default corpus without its bible source"
            )
        eval_data = out / "eval-data" / "bible"
        prepare = functools.partial(export_source, "bible", eval_data)
        notes = (f"before evaluation: export the bible documents of the default corpus to {eval_data}",)
    eval_data = str(Path(eval_data).resolve())
    subset = "+".join(train_sources) if train_sources else None
    labels = {arm: settings.label(size, arm) + (f"-{subset}" if subset else "") for arm in arms}
    values = {"data": {"sources": list(train_sources)}} if train_sources else {}
    runs = [
        make_run(settings, size, arm, seed, label=labels[arm], values=values) for seed in settings.seeds for arm in arms
    ]
    other = "report-" + results_name(PERPLEXITY, eval_data).removeprefix("perplexity-")
    trained_on = f"sources {', '.join(train_sources)}" if train_sources else "the training corpus"
    in_domain = f"Trained on {trained_on}: held-out text of the same sources"
    reports = [
        Report("report-in-domain", in_domain, names(runs)),
        Report(
            other,
            f"Trained on {trained_on}: evaluated on {named}",
            names(runs),
            data=eval_data,
            contrasts=pairs(labels),
        ),
    ]
    root = out / NAME
    record = {"size": size, "encodings": list(arms), "train_sources": list(train_sources or []), "eval_data": eval_data}
    campaign = settings.campaign(NAME, out, runs, reports, passkey=False)
    summarize_plan = functools.partial(
        summarize, root=root, folders=("report-in-domain", other), data=eval_data, labels=labels
    )
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan, notes, prepare)


def pairs(labels: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    """FoPE against RoPE and ALiBi on the other text (those the campaign runs)."""
    fope = labels.get("fope")
    return tuple(
        (labels[arm], fope, f"fope vs {arm} on the other text") for arm in ("rope", "alibi") if fope and arm in labels
    )


def summarize(
    results: Mapping[str, Any], *, root: Path, folders: tuple[str, str], data: str, labels: Mapping[str, str]
) -> str:
    """In-domain against other-text perplexity per arm, the two orderings, and FoPE against the others."""
    inside, other = (groups_of(results[folder]) for folder in folders)
    train, longest = lengths(inside)
    multiple = f"{longest // train}x" if train and longest else "-"
    table = []
    for label in labels.values():
        row = {"configuration": label, "n": str(inside[label]["n"]) if label in inside else "-"}
        for where, groups in (("in-domain", inside), ("other", other)):
            for name, length in (("1x", train), (multiple, longest)):
                record = by_length(groups[label], length) if label in groups and length else None
                row[f"{where} ppl {name}"] = spread_text(record["perplexity"]) if record else "-"
        record = by_length(other[label], longest) if label in other and longest else None
        row[f"other bpb {multiple}"] = spread_text(record["bits_per_byte"], 3) if record else "-"
        table.append(row)
    order_in, order_out = ranking(inside, longest), ranking(other, longest)
    same = "the same" if order_in == order_out else "a different"
    body = [f"Evaluated on the held-out split of the training text (in-domain) and on {data} (other).", ""]
    body += [f"reports: {root / folders[0] / 'report.md'}, {root / folders[1] / 'report.md'}", ""]
    body += ["```", text_table(table), "```", ""]
    body += [f"- ordering by mean perplexity at {multiple}, in-domain: {' < '.join(order_in)}"]
    body += [f"- on the other text: {' < '.join(order_out)} ({same} ordering; only as firm as the contrasts below)"]
    body += contrast_lines(other, pairs(labels))
    return summary("Cross-domain evaluation", body)

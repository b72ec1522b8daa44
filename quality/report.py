"""Run metrics as text: the table `manage.py evaluate` prints."""

from quality.models import EvalRun

SEARCH_COLUMNS = [
    ("R@1", "recall_at_1"),
    ("R@3", "recall_at_3"),
    ("R@10", "recall_at_10"),
    ("MRR", "reciprocal_rank"),
    ("nDCG@10", "ndcg_at_10"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
]
ANSWER_COLUMNS = [
    ("keywords", "keywords_ok"),
    ("citations", "citations_valid"),
    ("refusals", "refusal_ok"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
]


MODE_ORDER = ("vector", "keyword", "hybrid", "answer")


def ordered_metrics(metrics: dict) -> list[tuple[str, list[tuple[str, dict]]]]:
    """A run's metrics in reading order: the search modes, then the answers; in each, `all` and
    then the languages (stored JSON keeps no order)."""
    modes = sorted(
        metrics, key=lambda mode: (MODE_ORDER.index(mode) if mode in MODE_ORDER else 9, mode)
    )
    return [
        (mode, sorted(metrics[mode].items(), key=lambda item: (item[0] != "all", item[0])))
        for mode in modes
    ]


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if value <= 1 else f"{value:.1f}"
    return str(value)


def metrics_table(run: EvalRun) -> str:
    """One row per mode and language (`all` first), aligned columns."""
    lines = []
    for mode, groups in ordered_metrics(run.metrics):
        columns = ANSWER_COLUMNS if mode == "answer" else SEARCH_COLUMNS
        header = ["mode", "lang", "cases", *(label for label, _ in columns)]
        rows = [
            [
                mode,
                group,
                str(values.get("cases", 0)),
                *(_cell(values.get(key)) for _, key in columns),
            ]
            for group, values in groups
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.extend(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        )
        lines.append("")
    return "\n".join(lines)

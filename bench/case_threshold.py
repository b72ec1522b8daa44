"""Measure the layer-1 threshold for an embedding model on labelled cases.

The demo cases (dispatch/demo_data/cases.json) come in groups: reports of the same fault in
other words or languages, with the same fix. Each case is asked, as a new card would be, which
other cases reach a similarity threshold; a hit in its own group is right, one in another group
is a misleading case shown to a dispatcher. For each threshold this prints precision (share of
shown cases that are right), recall (share of the group found) and F1, the similarity spread of
same-group and other-group pairs, and the threshold with the best F1 (ties: the higher one).

    uv run python bench/case_threshold.py              # the local offline provider
    uv run python bench/case_threshold.py --model local-use-m3   # the multilingual offline one
    uv run python bench/case_threshold.py --model text-embedding-3-small   # needs OPENAI_API_KEY

Cards are embedded exactly as the app embeds them (ProblemCard.compose_search_text). Nothing is
written to a database.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "dispatch" / "demo_data" / "cases.json"


def card_texts(cases: list[dict]) -> list[str]:
    from dispatch.models import ProblemCard

    texts = []
    for case in cases:
        card = ProblemCard(
            brand=case["brand"],
            lock_model=case["model"],
            symptom=case["symptom"],
            error_code=case["error_code"],
            description=case["description"],
        )
        card.normalize()
        texts.append(card.search_text)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="embedding model (default: the local offline provider)")
    parser.add_argument(
        "--dimensions", type=int, help="vector size (default: the model's own, or the setting)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from knowledge.embed.local_provider import LocalHashingEmbeddingProvider
    from knowledge.embed.providers import get_embedding_provider

    model = args.model or LocalHashingEmbeddingProvider.model
    provider = get_embedding_provider(model=model, dimensions=args.dimensions)
    cases = json.loads(CASES.read_text(encoding="utf-8"))
    vectors = np.array(provider.embed(card_texts(cases)), dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    groups = np.array([case["group"] for case in cases])
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(cases), dtype=bool)
    same_pairs = similarity[same & off_diagonal]
    other_pairs = similarity[~same]
    print(f"model {model}, {len(cases)} cases in {len(set(groups))} groups")
    print(
        f"same-group pairs  ({len(same_pairs)}): min {same_pairs.min():.3f}  "
        f"median {np.median(same_pairs):.3f}  max {same_pairs.max():.3f}"
    )
    print(
        f"other-group pairs ({len(other_pairs)}): min {other_pairs.min():.3f}  "
        f"median {np.median(other_pairs):.3f}  p99 {np.quantile(other_pairs, 0.99):.3f}  "
        f"max {other_pairs.max():.3f}"
    )
    print("\nthreshold  precision  recall    F1")
    best = (0.0, 0.0)
    for threshold in np.arange(0.20, 0.81, 0.05):
        shown = (similarity >= threshold) & off_diagonal
        right = (shown & same).sum()
        precision = right / shown.sum() if shown.sum() else 1.0
        recall = right / (same & off_diagonal).sum()
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(f"  {threshold:.2f}      {precision:6.3f}   {recall:6.3f}  {f1:6.3f}")
        if f1 >= best[1]:
            best = (round(float(threshold), 2), f1)
    print(f"\nbest F1 {best[1]:.3f} at threshold {best[0]:.2f}")


if __name__ == "__main__":
    main()

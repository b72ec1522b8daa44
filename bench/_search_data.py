"""Deterministic synthetic corpus for bench/search.py: sources, chunk texts, clustered vectors
and query vectors drawn from the same distribution.

Vector model (documented in bench/search.py): 20 topics × 10 clusters = 200 cluster centroids
(unit vectors; clusters of one topic share a topic direction, cosine ≈ 0.55 between them, ≈ 0
across topics). A point is `normalize(centroid + 0.55·u + 0.25·n)` where `u` spreads the point in
a 24-dimensional subspace of its cluster and `n` is isotropic gaussian noise (|u| ≈ |n| ≈ 1).
Real text embeddings have a low intrinsic dimension; pure isotropic noise in 1536-d makes every
point of a cluster nearly equidistant from every other, which no ANN index (nor a user) can rank.
Queries are fresh points from the same clusters (not rows of the table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_VERSION = 1
SEED = 20_261_121
TOPICS = 20
CLUSTERS_PER_TOPIC = 10
CLUSTERS = TOPICS * CLUSTERS_PER_TOPIC
SUBSPACE = 24
SPREAD = 0.55  # low-rank, within-cluster spread
NOISE = 0.25  # isotropic noise
SOURCES = 100

# Brands chosen so a filter on one selects ~1 %, ~5 % and ~10 % of the chunks.
FILTER_BRANDS = {"Akane": 1, "Benkei": 5, "Chidori": 10}
OTHER_BRANDS = ("Daikoku", "Ebisu", "Fuji", "Gion")
# Source types: `case` holds ~5 % of the chunks.
SOURCE_TYPE_SHARES = (
    ("manual", 40),
    ("document", 20),
    ("sop", 15),
    ("faq", 10),
    ("web", 10),
    ("case", 5),
)

STOPWORDS = (
    "a an and are as at be by can do for from how if in is it of on or so that the this to was "
    "we when which with you your"
).split()
DOMAIN_WORDS = (
    "lock battery motor clutch door strike plate firmware keypad fingerprint sensor deadbolt "
    "install replace check torque screw cable connector module reset factory code alarm tamper "
    "technician customer visit warranty bolt latch handle cylinder override emergency terminal "
    "hinge frame gasket bracket spring solenoid antenna bluetooth pairing voltage fuse relay"
).split()
SYLLABLES = (
    "ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho ma mi mu me mo "
    "ya yu yo ra ri ru re ro wa ga gi gu ge go za ji zu ze zo ba bi bu be bo pa pi pu pe po"
).split()
ZH = "電子鎖電池沒電指紋辨識門片天地鉤馬達離合器更換韌體更新錯誤代碼維修技師到府服務保固緊急開門機械鑰匙"
JA = "電子錠電池切れ暗証番号施錠解錠非常用キー初期設定交換修理点検エラーコード取付扉サムターン"


@dataclass
class Plan:
    n: int
    source_types: list[str]
    source_brands: list[str]
    chunk_source: np.ndarray  # source index of each chunk (rows are in source order)
    chunk_ordinal: np.ndarray
    chunk_cluster: np.ndarray
    centroids: np.ndarray  # CLUSTERS × dims
    bases: np.ndarray  # CLUSTERS × SUBSPACE × dims
    dims: int


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def make_plan(n: int, dims: int) -> Plan:
    rng = np.random.default_rng(SEED)
    topics = _unit(rng.standard_normal((TOPICS, dims)))
    offsets = _unit(rng.standard_normal((CLUSTERS, dims)))
    centroids = _unit(np.repeat(topics, CLUSTERS_PER_TOPIC, axis=0) + 0.9 * offsets).astype(
        np.float32
    )
    bases = (rng.standard_normal((CLUSTERS, SUBSPACE, dims)) / np.sqrt(dims)).astype(np.float32)

    # Sources: types by share, brands so the filter brands hold 1, 5 and 10 sources of 100.
    types: list[str] = []
    for name, share in SOURCE_TYPE_SHARES:
        types += [name] * (share * SOURCES // 100)
    types = [types[i] for i in rng.permutation(len(types))]
    order = rng.permutation(SOURCES).tolist()
    brands = [""] * SOURCES
    cursor = 0
    for brand, count in FILTER_BRANDS.items():
        for index in order[cursor : cursor + count]:
            brands[index] = brand
        cursor += count
    for index in order[cursor:]:
        brands[index] = OTHER_BRANDS[int(rng.integers(len(OTHER_BRANDS)))]

    # Each source writes about one primary topic (6 of its clusters) and 2 clusters elsewhere.
    source_clusters = []
    for _ in range(SOURCES):
        topic = int(rng.integers(TOPICS))
        own = topic * CLUSTERS_PER_TOPIC + rng.choice(CLUSTERS_PER_TOPIC, 6, replace=False)
        other = rng.choice(CLUSTERS, 2, replace=False)
        source_clusters.append(np.concatenate([own, other]))
    chunk_source = (np.arange(n) * SOURCES) // n
    chunk_ordinal = np.zeros(n, dtype=np.int64)
    chunk_cluster = np.zeros(n, dtype=np.int64)
    for s in range(SOURCES):
        rows = np.flatnonzero(chunk_source == s)
        chunk_ordinal[rows] = np.arange(len(rows))
        chunk_cluster[rows] = rng.choice(source_clusters[s], len(rows))
    return Plan(
        n=n,
        source_types=types,
        source_brands=brands,
        chunk_source=chunk_source,
        chunk_ordinal=chunk_ordinal,
        chunk_cluster=chunk_cluster,
        centroids=centroids,
        bases=bases,
        dims=dims,
    )


def points(plan: Plan, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fresh unit vectors from the given clusters (float32, len(clusters) × dims)."""
    out = np.empty((len(clusters), plan.dims), dtype=np.float32)
    for cluster in np.unique(clusters):
        rows = np.flatnonzero(clusters == cluster)
        z = rng.standard_normal((len(rows), SUBSPACE), dtype=np.float32)
        spread = (z @ plan.bases[cluster]) / np.sqrt(SUBSPACE)
        noise = rng.standard_normal((len(rows), plan.dims), dtype=np.float32)
        out[rows] = plan.centroids[cluster] + SPREAD * spread + NOISE * noise / np.sqrt(plan.dims)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def chunk_vectors(plan: Plan) -> np.ndarray:
    return points(plan, plan.chunk_cluster, np.random.default_rng(SEED + 1))


def _vocabulary(rng: np.random.Generator, size: int = 4000) -> list[str]:
    words = list(DOMAIN_WORDS)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES, int(rng.integers(2, 5))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _zipf_weights(size: int) -> np.ndarray:
    # Offset Zipf: the commonest content word is in about half of the chunks, rank 100 in ~6 %.
    weights = 1.0 / (np.arange(size) + 10.0)
    return weights / weights.sum()


def chunk_texts(plan: Plan) -> list[str]:
    """~60–110 words each: stopwords, Zipf-distributed content words, error codes (E-21),
    model numbers (KG-300) and, in a fifth of the chunks, a Chinese or Japanese sentence."""
    rng = np.random.default_rng(SEED + 2)
    vocabulary = np.array(_vocabulary(rng))
    weights = _zipf_weights(len(vocabulary))
    lengths = rng.integers(60, 111, plan.n)
    total = int(lengths.sum())
    content = vocabulary[rng.choice(len(vocabulary), total, p=weights)]
    stop = np.array(STOPWORDS)[rng.integers(len(STOPWORDS), size=total)]
    words = np.where(rng.random(total) < 0.4, stop, content)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    extras = rng.random((plan.n, 3))
    codes = rng.integers(1, 100, plan.n)
    models = rng.integers(100, 1000, plan.n)
    cjk_pool = [ZH, JA]
    texts = []
    for i in range(plan.n):
        chunk_words = words[bounds[i] : bounds[i + 1]].tolist()
        sentences = []
        for start in range(0, len(chunk_words), 12):
            sentence = " ".join(chunk_words[start : start + 12])
            sentences.append(sentence[:1].upper() + sentence[1:] + ".")
        if extras[i, 0] < 0.3:
            sentences.append(f"Error E-{codes[i]:02d} means check the {chunk_words[0]}.")
        if extras[i, 1] < 0.2:
            sentences.append(f"Applies to model KG-{models[i]}.")
        if extras[i, 2] < 0.2:
            pool = cjk_pool[i % 2]
            picks = rng.integers(len(pool), size=int(rng.integers(12, 30)))
            sentences.append("".join(pool[p] for p in picks) + "。")
        texts.append(" ".join(sentences))
    return texts


def text_queries(count: int) -> list[str]:
    """What people type: a few content words (same Zipf distribution as the text), error codes,
    model numbers, short CJK terms."""
    rng = np.random.default_rng(SEED + 3)
    vocabulary = _vocabulary(np.random.default_rng(SEED + 2))
    weights = _zipf_weights(len(vocabulary))

    def words(k: int) -> list[str]:
        return [vocabulary[i] for i in rng.choice(len(vocabulary), k, p=weights)]

    queries = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5:
            w = words(int(rng.integers(2, 4)))
            queries.append(f"how do I {w[0]} the {' '.join(w[1:])}")
        elif roll < 0.65:
            queries.append(f"error E-{int(rng.integers(1, 100)):02d} {words(1)[0]}")
        elif roll < 0.75:
            queries.append(f"KG-{int(rng.integers(100, 1000))} {' '.join(words(2))}")
        elif roll < 0.9:
            pool = ZH if rng.random() < 0.5 else JA
            start = int(rng.integers(len(pool) - 4))
            queries.append(pool[start : start + int(rng.integers(2, 5))])
        else:
            pool = ZH
            start = int(rng.integers(len(pool) - 3))
            queries.append(
                f"{pool[start : start + 2]} {words(1)[0]} E-{int(rng.integers(1, 100)):02d}"
            )
    return queries

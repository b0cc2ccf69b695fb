"""Retrieval evaluation: R@1/5/10 in both directions from quantized sparse vectors by exact dot products (ties count
against the model, so empty vectors score 0), the same for the dense twin, and zero-shot classification."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lexlip_es.grounding import grounding_at_k
from lexlip_es.metrics import recall_at
from lexlip_es.sparse import SparseVector
from trainer.data.datasets import Pair


def sparse_matrix(vectors: Sequence[SparseVector], size: int) -> npt.NDArray[np.float64]:
    out = np.zeros((len(vectors), size), dtype=np.float64)
    for row, v in enumerate(vectors):
        out[row, v.indices] = v.values
    return out


def ranks_against(scores: npt.NDArray[np.float64], positives: list[list[int]]) -> npt.NDArray[np.int64]:
    """For each query row, how many non-positive candidates score at least as high as its best positive."""
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for q, pos in enumerate(positives):
        row = scores[q]
        best = row[pos].max()
        ranks[q] = int(np.count_nonzero(row >= best)) - int(np.count_nonzero(row[pos] >= best))
    return ranks


def retrieval_metrics(
    image_matrix: npt.NDArray[np.float64],
    caption_matrix: npt.NDArray[np.float64],
    caption_image: Sequence[int],
    families: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Text-to-image and image-to-text recall from vector matrices (one row per image / caption); with `families`
    (one per image), where the text-to-image misses at rank 1 went (`misses_by_family`)."""
    scores = caption_matrix @ image_matrix.T  # captions x images
    t2i = ranks_against(scores, [[i] for i in caption_image])
    by_image: list[list[int]] = [[] for _ in range(image_matrix.shape[0])]
    for c, i in enumerate(caption_image):
        by_image[i].append(c)
    i2t = ranks_against(scores.T, by_image)
    result = {
        "text_to_image": recall_at(t2i),
        "image_to_text": recall_at(i2t),
        "images": image_matrix.shape[0],
        "captions": caption_matrix.shape[0],
    }
    if families is not None:
        result["text_to_image_misses"] = misses_by_family(scores, caption_image, families)
    return result


def misses_by_family(
    scores: npt.NDArray[np.float64], caption_image: Sequence[int], families: Sequence[str]
) -> dict[str, int]:
    """Text-to-image misses at rank 1 (ties against the model, as in `ranks_against`), split by the best-scoring
    other image: one of the caption's own image's family (emoji: a skin-tone variant of the same emoji, which a
    caption tells apart by its skin-tone words alone) or any other image."""
    owner = np.asarray(caption_image)
    own = scores[np.arange(len(owner)), owner]
    others = scores.copy()
    others[np.arange(len(owner)), owner] = -np.inf
    rival = others.argmax(axis=1)
    missed = others[np.arange(len(owner)), rival] >= own
    family = np.asarray(families)
    sibling = family[rival] == family[owner]
    _, member, sizes = np.unique(family, return_inverse=True, return_counts=True)
    has_family = sizes[member] > 1
    return {
        "captions": len(owner),
        "captions_of_an_image_with_family": int(has_family[owner].sum()),
        "missed": int(missed.sum()),
        "to_its_family": int((missed & sibling).sum()),
        "elsewhere": int((missed & ~sibling).sum()),
    }


def families(pairs: Sequence[Pair], key: str = "base") -> list[str] | None:
    """Each pair's family (emoji: `base`, the emoji its skin-tone variants share), or None when a pair has none."""
    found = [p.meta.get(key) for p in pairs]
    return None if any(f is None for f in found) else [str(f) for f in found]


def _flatten(pairs: Sequence[Pair]) -> tuple[list[str], list[int]]:
    captions, owner = [], []
    for i, pair in enumerate(pairs):
        for caption in pair.captions:
            captions.append(caption)
            owner.append(i)
    return captions, owner


def evaluate_sparse(
    encoder: Any,
    pairs: Sequence[Pair],
    scale: float = 100.0,
    top_k_image: int | None = None,
    top_k_text: int | None = None,
) -> dict[str, Any]:
    captions, owner = _flatten(pairs)
    images = encoder.encode_images([p.image for p in pairs], scale=scale, top_k=top_k_image)
    texts = encoder.encode_texts(captions, scale=scale, top_k=top_k_text)
    size = len(encoder.vocab)
    image_matrix = sparse_matrix(images, size)
    result = retrieval_metrics(image_matrix, sparse_matrix(texts, size), owner, families(pairs))
    weighted = weighted_text_to_image(encoder, image_matrix, pairs, scale, top_k_text)
    if weighted:
        result["text_to_image_unweighted"] = result["text_to_image"]
        result.update(weighted)
    result["mean_nnz_image"] = float(np.mean([v.nnz for v in images]))
    result["empty_images"] = sum(v.nnz == 0 for v in images)
    result["mean_nnz_text"] = float(np.mean([v.nnz for v in texts]))
    result.update(grounding(encoder.tokenizer, images, texts, captions, owner))
    result.update(grounding_by_label(encoder.tokenizer, images, pairs))

    def prompts(texts: list[str]) -> npt.NDArray[np.float64]:
        return sparse_matrix(encoder.encode_queries(texts, scale=scale, top_k=top_k_text), size)

    result.update(zero_shot(image_matrix, prompts, pairs))
    return result


def weighted_text_to_image(
    encoder: Any, image_matrix: npt.NDArray[np.float64], pairs: Sequence[Pair], scale: float, top_k: int | None
) -> dict[str, Any]:
    """With the checkpoint's query term weights (lexlip_es/query_weights.py), text-to-image as a search runs it:
    the captions as weighted queries (`text_to_image`, its misses), and the unweighted figures beside them. The
    captions stay unweighted as documents (image-to-text). Nothing without weights."""
    weights = encoder.query_weights
    if weights is None or weights.power == 0:
        return {}
    captions, owner = _flatten(pairs)
    queries = sparse_matrix(encoder.encode_queries(captions, scale=scale, top_k=top_k), len(encoder.vocab))
    weighted = retrieval_metrics(image_matrix, queries, owner, families(pairs))
    out = {"query_weights_power": weights.power, "text_to_image": weighted["text_to_image"]}
    if "text_to_image_misses" in weighted:
        out["text_to_image_misses"] = weighted["text_to_image_misses"]
    return out


def caption_pieces(tokenizer: Any, captions: Sequence[str]) -> list[set[int]]:
    """The WordPiece ids of each caption (padding left out)."""
    ids, mask = tokenizer(list(captions))
    return [set(row[m.astype(bool)].tolist()) for row, m in zip(ids, mask, strict=True)]


def grounding(
    tokenizer: Any,
    images: Sequence[SparseVector],
    texts: Sequence[SparseVector],
    captions: Sequence[str],
    owner: Sequence[int],
    k: int = 10,
) -> dict[str, float]:
    """grounding@k: images against the pieces of all their captions, captions against their own pieces."""
    pieces = caption_pieces(tokenizer, captions)
    per_image: list[set[int]] = [set() for _ in images]
    for caption, image in enumerate(owner):
        per_image[image] |= pieces[caption]
    vocab = tokenizer.vocab
    return {
        f"grounding@{k}_image": grounding_at_k(images, per_image, vocab, k),
        f"grounding@{k}_caption": grounding_at_k(texts, pieces, vocab, k),
    }


def grounding_by_label(
    tokenizer: Any, images: Sequence[SparseVector], pairs: Sequence[Pair], kind: str = "group", k: int = 10
) -> dict[str, dict[str, dict[str, float]]]:
    """Image grounding@k within each class of a label kind (emoji: group), with the class's share of the images;
    nothing for data sets without that label."""
    labels = zero_shot_tasks(pairs).get(kind)
    if labels is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for label in sorted(set(labels)):
        picked = [i for i, own in enumerate(labels) if own == label]
        pieces = [set().union(*caption_pieces(tokenizer, pairs[i].captions)) for i in picked]
        score = grounding_at_k([images[i] for i in picked], pieces, tokenizer.vocab, k)
        out[label] = {"images": len(picked), f"grounding@{k}_image": score}
    return {f"grounding@{k}_image_by_{kind}": out}


def evaluate_dense(encoder: Any, pairs: Sequence[Pair]) -> dict[str, Any]:
    captions, owner = _flatten(pairs)
    images = np.stack(encoder.encode_images([p.image for p in pairs])).astype(np.float64)
    texts = np.stack(encoder.encode_texts(captions)).astype(np.float64)
    result = retrieval_metrics(images, texts, owner, families(pairs))
    result.update(zero_shot(images, lambda p: np.stack(encoder.encode_texts(p)).astype(np.float64), pairs))
    return result


ZERO_SHOT_TEMPLATE = "an emoji of {label}"


def zero_shot_tasks(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """Each label kind every pair carries in `meta["labels"]` (emoji: group and subgroup, readable words) -> the
    pairs' labels of that kind. Data sets without labels (shapes) have no task."""
    kinds = set.intersection(*(set(p.meta.get("labels", {})) for p in pairs)) if pairs else set()
    return {kind: [str(p.meta["labels"][kind]) for p in pairs] for kind in sorted(kinds)}


def zero_shot_accuracy(scores: npt.NDArray[np.float64], labels: Sequence[str], classes: Sequence[str]) -> float:
    """Images x classes scores -> the fraction whose own class scores strictly highest (a tie counts as wrong)."""
    index = {c: i for i, c in enumerate(classes)}
    truth = scores[np.arange(len(labels)), [index[label] for label in labels]]
    return float(np.mean(np.count_nonzero(scores >= truth[:, None], axis=1) == 1))


def zero_shot(
    image_matrix: npt.NDArray[np.float64],
    encode_prompts: Callable[[list[str]], npt.NDArray[np.float64]],
    pairs: Sequence[Pair],
    template: str = ZERO_SHOT_TEMPLATE,
) -> dict[str, Any]:
    """Zero-shot classification as CLIP and STAIR report it: each label kind's classes written into `template`,
    encoded as queries, and each image given the class whose prompt scores highest. With chance (1 / classes) and
    the majority class's share beside the accuracy."""
    out: dict[str, Any] = {}
    for kind, labels in zero_shot_tasks(pairs).items():
        classes = sorted(set(labels))
        scores = image_matrix @ encode_prompts([template.format(label=c) for c in classes]).T
        majority = max(labels.count(c) for c in classes) / len(labels)
        out[f"zero_shot_{kind}"] = {
            "accuracy": zero_shot_accuracy(scores, labels, classes),
            "classes": len(classes),
            "chance": 1 / len(classes),
            "majority": majority,
            "template": template,
        }
    return out

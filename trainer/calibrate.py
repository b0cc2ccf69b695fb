"""Query term weights for a trained LexLIP checkpoint (lexlip_es/query_weights.py).

Document frequencies come from the training split's image lexicons (what the model hands an index); the power is
the one of `POWERS` that ranks the validation split's images best for its captions (text-to-image R@1, ties to the
smaller power, 0 meaning no weighting). The file records every power's figure, so a reader sees what was chosen
over what. The test split is never looked at.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.query_weights import QueryWeights, query_vectors
from trainer.data.datasets import load_pairs
from trainer.evaluate import _flatten, retrieval_metrics, sparse_matrix
from trainer.loop import TrainingError

POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def calibrate_query_weights(
    checkpoint: str | Path,
    data: str | Path,
    powers: Sequence[float] = POWERS,
    scale: float = 100.0,
    say: Callable[[str], None] = lambda line: None,
) -> QueryWeights:
    """Measure and write `query_weights.json` into `checkpoint`; returns what was written. `say` hears each stage."""
    started = time.monotonic()
    encoder = LexLIPEncoder.from_pretrained(checkpoint)
    train, val = load_pairs(data, "train"), load_pairs(data, "val")
    if not train or not val:
        raise TrainingError(f"{data}: query weights need a train and a val split (found {len(train)} and {len(val)})")
    say(f"query weights 1/2: token counts over {len(train):,} training image lexicons")
    reference = QueryWeights.from_lexicons(
        encoder.encode_images([p.image for p in train], scale=scale), encoder.vocab, power=0.0
    )
    size = len(encoder.vocab)
    say(f"query weights 2/2: powers {', '.join(map(str, powers))} on {len(val):,} validation images")
    images = sparse_matrix(encoder.encode_images([p.image for p in val], scale=scale), size)
    captions, owner = _flatten(val)
    rows = [v.to_dense(size) for v in encoder.encode_texts(captions)]
    figures: dict[str, float] = {}
    for power in powers:
        queries = query_vectors(rows, reference.with_power(power), encoder.vocab, scale)
        metrics = retrieval_metrics(images, sparse_matrix(queries, size), owner)
        figures[str(power)] = round(float(metrics["text_to_image"]["R@1"]), 4)
    best = max(powers, key=lambda p: (figures[str(p)], -p))
    chosen = {"data": Path(data).name, "split": "val", "captions": len(captions), "t2i_R@1_by_power": figures}
    weights = QueryWeights(power=best, documents=reference.documents, df=reference.df, chosen=chosen)
    weights.save(checkpoint)
    say(f"query weights: power {best} (val t2i R@1 {figures[str(best)]}), {time.monotonic() - started:.0f} s")
    return weights

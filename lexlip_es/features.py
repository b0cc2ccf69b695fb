"""Feature names and weights as the engines store them.

OpenSearch's `rank_feature` query splits its field path at the last dot, and Elasticsearch rejects dotted names in
`rank_features`, so a token such as `.` or `u.s` must be renamed. Escaping is reversible percent-encoding of `%`, `.`,
whitespace and control characters; every other character, including non-ASCII, is kept.

Lucene's `FeatureField` keeps 9 significant bits of a float: integers below 512 survive exactly, larger ones are
truncated. `lucene_feature_value` reproduces that so expected scores can be computed in Python.

The `impact` field type stores a lexicon as text, `token|weight` pairs separated by spaces, which the engine indexes
as terms whose frequency is the weight (Anserini's impact encoding): `|` is escaped too there.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping

LUCENE_EXACT_LIMIT = 512
"""Integer weights strictly below this value are stored exactly by Lucene's FeatureField."""

_ESCAPED = re.compile(r"[%.\s\x00-\x1f\x7f]")
_PERCENT = re.compile(r"%([0-9A-F]{2})")


def escape_feature(token: str) -> str:
    """Return an engine-safe feature name for a vocabulary token."""
    if not token:
        raise ValueError("a feature name cannot be empty")
    return _ESCAPED.sub(lambda m: f"%{ord(m.group()):02X}", token)


def unescape_feature(name: str) -> str:
    """Invert `escape_feature`."""
    return _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), name)


def escape_impact_token(token: str) -> str:
    """A token as a term of an `impact` field: `escape_feature`, and `|` (the weight delimiter) escaped as well."""
    return escape_feature(token).replace("|", "%7C")


def impact_text(features: Mapping[str, int]) -> str:
    """{escaped name: positive integer} (from `impact_features`) as the text an `impact` field indexes."""
    return " ".join(f"{name.replace('|', '%7C')}|{weight}" for name, weight in features.items())


def parse_impact_text(text: str) -> dict[str, int]:
    """Invert `impact_text`: {unescaped token: weight}."""
    out: dict[str, int] = {}
    for pair in text.split():
        name, _, weight = pair.rpartition("|")
        out[unescape_feature(name)] = int(weight)
    return out


def stored_lexicon(value: object) -> dict[str, float]:
    """A lexicon as an engine's `_source` holds it, keyed by vocabulary token: a `rank_features` object of escaped
    names, or an `impact` field's `token|weight` text. Anything else (absent, excluded from `_source`) is empty."""
    if isinstance(value, str):
        return {token: float(weight) for token, weight in parse_impact_text(value).items()}
    if isinstance(value, Mapping):
        return {unescape_feature(str(name)): float(weight) for name, weight in value.items()}
    return {}


def lucene_feature_value(weight: float) -> float:
    """The value Lucene's FeatureField gives back for `weight`: the float with its low 15 mantissa bits cleared."""
    if not weight > 0:
        raise ValueError(f"feature weights must be positive, got {weight!r}")
    bits = struct.unpack(">I", struct.pack(">f", weight))[0]
    return float(struct.unpack(">f", struct.pack(">I", (bits >> 15) << 15))[0])


def dot(query: Mapping[str, float], doc: Mapping[str, float]) -> float:
    """Exact dot product of two sparse vectors keyed by feature name."""
    if len(doc) < len(query):
        query, doc = doc, query
    return sum(w * doc[t] for t, w in query.items() if t in doc)


def lucene_dot(query: Mapping[str, float], doc: Mapping[str, float]) -> float:
    """Dot product with document weights as Lucene's FeatureField stores them (query boosts stay exact)."""
    return sum(w * lucene_feature_value(doc[t]) for t, w in query.items() if t in doc)


def impact_features(vector: Mapping[str, int], what: str) -> dict[str, int]:
    """Escaped names with positive integer weights, as written to the engines and Anserini; refuses anything else."""
    out: dict[str, int] = {}
    for token, weight in vector.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            raise ValueError(f"{what}: weight of {token!r} must be a positive integer, got {weight!r}")
        out[escape_feature(token)] = weight
    return out

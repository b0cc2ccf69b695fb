"""WordNet 3.0's noun synsets, read from the database files Debian's `wordnet-base` ships (`data.noun`). Torch-free.

ImageNet's class ids are WordNet 3.0 noun offsets (`n02129604` is synset 02129604, "tiger, Panthera tigris"), so a
class's broader terms are its synset's hypernyms ("big cat", "cat", "feline", ...). Only what the class words need is
read: each synset's lemmas and its hypernym and instance-hypernym pointers. The format is wndb(5WN):
`offset lex_filenum ss_type w_cnt word lex_id ... p_cnt [ptr offset pos source/target]... | gloss`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_NOUN = "data.noun"
HYPERNYM_POINTERS = frozenset({"@", "@i"})


class WordNetError(ValueError):
    """A WordNet database that is missing or does not parse: the message names the file and line."""


@dataclass(frozen=True)
class Synset:
    offset: str
    """Eight digits, as ImageNet's wnids hold them after the `n`."""
    lemmas: tuple[str, ...]
    """Its words with spaces for underscores and WordNet's `(a)`/`(p)` markers removed, e.g. ("big cat", "cat")."""
    hypernyms: tuple[str, ...]


@dataclass(frozen=True)
class WordNet:
    synsets: dict[str, Synset]

    @classmethod
    def load(cls, folder: str | Path) -> WordNet:
        """The noun synsets of a WordNet dict folder (the one holding `data.noun`)."""
        path = Path(folder) / DATA_NOUN
        if not path.is_file():
            raise WordNetError(f"{path} does not exist: give the folder of WordNet 3.0's database files")
        synsets = {}
        with path.open(encoding="latin-1") as lines:
            for number, line in enumerate(lines, start=1):
                if line.startswith("  "):  # the licence header
                    continue
                synset = parse_line(line, f"{path}:{number}")
                synsets[synset.offset] = synset
        if not synsets:
            raise WordNetError(f"{path} holds no synsets")
        return cls(synsets)

    def synset(self, wnid: str) -> Synset:
        """A synset by ImageNet wnid (`n02129604`) or bare offset."""
        offset = wnid[1:] if wnid[:1] == "n" else wnid
        try:
            return self.synsets[offset]
        except KeyError:
            raise WordNetError(f"no noun synset {wnid!r} in this WordNet") from None

    def ancestors(self, wnid: str, depth: int) -> Iterator[tuple[int, Synset]]:
        """(distance, synset) for each hypernym up to `depth` steps above `wnid`, nearest first, each once."""
        seen = {self.synset(wnid).offset}
        level = [self.synset(wnid)]
        for distance in range(1, depth + 1):
            above = []
            for synset in level:
                for offset in synset.hypernyms:
                    if offset not in seen:
                        seen.add(offset)
                        above.append(self.synsets[offset])
            yield from ((distance, s) for s in above)
            level = above


def _lemma(word: str) -> str:
    for marker in ("(a)", "(p)", "(ip)"):
        word = word.removesuffix(marker)
    return word.replace("_", " ")


def parse_line(line: str, where: str) -> Synset:
    """One `data.noun` line; `where` (file:line) names it in the error when it does not parse."""
    fields = line.split(" | ", 1)[0].split()
    try:
        count = int(fields[3], 16)
        lemmas = tuple(_lemma(fields[4 + 2 * i]) for i in range(count))
        at = 4 + 2 * count
        pointers = int(fields[at])
        hypernyms = tuple(
            fields[at + 2 + 4 * i] for i in range(pointers) if fields[at + 1 + 4 * i] in HYPERNYM_POINTERS
        )
    except (IndexError, ValueError) as exc:
        raise WordNetError(f"{where}: not a WordNet data line ({exc})") from None
    return Synset(fields[0], lemmas, hypernyms)

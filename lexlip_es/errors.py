"""Exception types raised by the library; the CLI prints their message as one line."""

from __future__ import annotations


class LexlipError(Exception):
    """Base class for every error this project raises on purpose."""


class EngineError(LexlipError):
    """A local engine (OpenSearch, Elasticsearch, Anserini, Redis) or its tooling failed."""


class EngineStartError(EngineError):
    """A local engine did not come up; the message names the engine, the reason and the tail of its log."""

    def __init__(self, engine: str, reason: str, log_tail: str = "") -> None:
        self.engine = engine
        self.reason = reason
        self.log_tail = log_tail
        message = f"{engine} failed to start: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {engine} log ---\n{log_tail}"
        super().__init__(message)


class EngineUnavailableError(EngineError):
    """The search cluster could not be reached (connection refused, timeout, DNS)."""


class IndexNotFoundError(LexlipError):
    """The index or alias named in a call does not exist."""


class QueryError(LexlipError, ValueError):
    """A query the library refuses: wrong type, too long, control characters, non-positive weights."""


class EmptyQueryError(QueryError):
    """There is nothing to search for: empty text, or a text or image whose lexicon has no positive weight."""


class MappingError(LexlipError):
    """An index exists but was not made for this model or layout (missing fields, other model id, other scale)."""

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

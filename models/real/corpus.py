"""The Lee news corpus (300 short Australian news articles) shipped in gensim's test data.

The file is located with :func:`importlib.util.find_spec`, so gensim itself is never imported
(importing it takes seconds and pulls in scipy).  One article per line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsa.errors import ShapeError

from . import package_dir

__all__ = ["INSTALL", "corpus_path", "articles", "text", "token_chunks"]

INSTALL = "pip install gensim==4.4.0"
_REL = Path("test") / "test_data" / "lee_background.cor"


def corpus_path() -> Path:
    """Path of ``lee_background.cor`` (MissingToolError with the install command if absent)."""
    path = package_dir("gensim", INSTALL) / _REL
    if not path.is_file():
        from sparsa.errors import MissingToolError

        raise MissingToolError(f"{path} is missing; reinstall with: {INSTALL}")
    return path


def articles() -> list[str]:
    """The 300 articles, whitespace-normalised, in file order."""
    raw = corpus_path().read_text(encoding="utf-8", errors="replace")
    return [" ".join(line.split()) for line in raw.splitlines() if line.strip()]


def text() -> str:
    """All articles joined with newlines (the text perplexity is measured on)."""
    return "\n".join(articles())


def token_chunks(tokenize: Callable[[str], np.ndarray], length: int = 256) -> list[np.ndarray]:
    """Split the tokenized corpus into consecutive, non-overlapping chunks of ``length`` tokens.

    The incomplete tail is dropped, so every chunk has exactly ``length`` tokens.
    """
    if not isinstance(length, int) or length < 2:
        raise ShapeError(f"chunk length must be an int >= 2, not {length!r}")
    ids = np.asarray(tokenize(text()), dtype=np.int64)
    n = ids.size // length
    return [ids[i * length : (i + 1) * length] for i in range(n)]

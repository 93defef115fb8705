"""Calibration and abstention figures (pure numpy): temperature scaling, ECE, the energy OOD score, AUROC, F1.

- Temperature scaling (Guo et al. 2017): one scalar T > 0 dividing the logits, fitted by minimising the negative
  log-likelihood of validation labels.
- ECE: 15 equal-width confidence bins, sum over bins of (bin share) x |accuracy - mean confidence|.
- Energy score (Liu et al. 2020): E(x) = -T log sum_k exp(f_k(x) / T); in-distribution inputs have lower energy.
  The abstention threshold is the energy below which ``keep`` (95%) of validation cries fall.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp, softmax

ECE_BINS = 15


def nll(logits: NDArray[np.float32], labels: NDArray[np.int64], temperature: float) -> float:
    logp = log_softmax(logits.astype(np.float64) / temperature, axis=1)
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def fit_temperature(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    """The T in [0.05, 20] that minimises validation NLL (searched on log T)."""
    if len(labels) == 0:
        return 1.0
    found = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=(np.log(0.05), np.log(20.0)), method="bounded"
    )
    return float(np.exp(found.x))


def probabilities(logits: NDArray[np.float32], temperature: float = 1.0) -> NDArray[np.float64]:
    return np.asarray(softmax(logits.astype(np.float64) / temperature, axis=1))


def ece(probs: NDArray[np.float64], labels: NDArray[np.int64], bins: int = ECE_BINS) -> float:
    if len(labels) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def energy(logits: NDArray[np.float32], temperature: float = 1.0) -> NDArray[np.float64]:
    return np.asarray(-temperature * logsumexp(logits.astype(np.float64) / temperature, axis=1))


def energy_threshold(in_distribution: NDArray[np.float64], keep: float = 0.95) -> float:
    """The energy under which ``keep`` of in-distribution validation inputs fall."""
    if len(in_distribution) == 0:
        return float("inf")
    return float(np.quantile(in_distribution, keep))


def auroc(positive: NDArray[np.float64], negative: NDArray[np.float64]) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2.0
    return float(u / (len(positive) * len(negative)))


def macro_f1(predicted: NDArray[np.int64], labels: NDArray[np.int64], classes: int) -> float:
    scores = []
    for k in range(classes):
        tp = int(np.sum((predicted == k) & (labels == k)))
        fp = int(np.sum((predicted == k) & (labels != k)))
        fn = int(np.sum((predicted != k) & (labels == k)))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def binary_f1(predicted: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    tp = int(np.sum(predicted & truth))
    denominator = 2 * tp + int(np.sum(predicted & ~truth)) + int(np.sum(~predicted & truth))
    return 2 * tp / denominator if denominator else 0.0

"""Clustering of speaker embeddings with an automatic speaker count.

Two stages: average-linkage clustering of the embeddings cut where two groups of voice are less alike
than one speaker's (small, pure clusters), then the clusters' mean embeddings are merged while they stay
similar. Means of many embeddings tell speakers apart better than single ones do. Clusters of fewer than
`min_cluster_size` members can be made to join their nearest cluster instead of counting as speakers.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

SPLIT_THRESHOLD = 0.5
"""Cosine distance (average linkage) that cuts the first stage. CAM++ puts one voice's clips at a
similarity of 0.5-0.97 and two voices' below 0.25."""
MERGE_THRESHOLD = 0.7
"""Cosine similarity of two clusters' mean embeddings above which they are one speaker."""
MIN_CLUSTER_SIZE = 1


def cluster_embeddings(
    embeddings: np.ndarray,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    split_threshold: float = SPLIT_THRESHOLD,
    merge_threshold: float = MERGE_THRESHOLD,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
) -> np.ndarray:
    """Labels 0..k-1 for unit-length embeddings (n, d); k automatic, kept within [min_speakers, max_speakers]."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(embeddings)
    low = max(1, min_speakers or 1)
    high = max(low, max_speakers or n)
    if n <= 1 or high == 1:
        return np.zeros(n, dtype=int)
    embeddings = embeddings.astype(np.float64)
    tree = linkage(embeddings, method="average", metric="cosine")
    labels = _compact(fcluster(tree, t=split_threshold, criterion="distance"))
    labels = absorb_small(embeddings, labels, min_cluster_size)
    labels = merge_similar(embeddings, labels, merge_threshold, low, high)
    if labels.max() + 1 < low:
        log.debug("fewer than %d speakers found: cutting the window tree at %d", low, low)
        labels = _compact(fcluster(tree, t=min(low, n), criterion="maxclust"))
    return refine(embeddings, labels)


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int | None = None) -> np.ndarray:
    """Unit-length mean embedding of each label 0..k-1 (k, d; k defaults to the largest label + 1); a
    label without members gets a zero vector, alike to nothing."""
    k = int(labels.max()) + 1 if k is None else k
    zero = np.zeros(embeddings.shape[1], dtype=embeddings.dtype)
    means = np.stack([embeddings[labels == c].mean(axis=0) if (labels == c).any() else zero for c in range(k)])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-8)


def absorb_small(embeddings: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Move clusters of fewer than `min_size` members into the most similar larger cluster."""
    sizes = np.bincount(labels)
    large = np.flatnonzero(sizes >= min_size)
    if len(large) == 0 or len(large) == len(sizes):
        return labels
    centres = centroids(embeddings, labels)
    labels = labels.copy()
    for small in np.flatnonzero(sizes < min_size):
        labels[labels == small] = large[np.argmax(centres[large] @ centres[small])]
    return _compact(labels)


def merge_similar(
    embeddings: np.ndarray, labels: np.ndarray, threshold: float, low: int = 1, high: int | None = None
) -> np.ndarray:
    """Merge the most similar pair of clusters (by mean embedding) while its similarity is at least
    `threshold` and more than `low` clusters remain, or while more than `high` remain."""
    labels = labels.copy()
    while True:
        k = int(labels.max()) + 1
        if k <= low:
            return labels
        centres = centroids(embeddings, labels)
        similarity = centres @ centres.T
        np.fill_diagonal(similarity, -np.inf)
        a, b = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[a, b] < threshold and (high is None or k <= high):
            return labels
        labels[labels == max(a, b)] = min(a, b)
        labels = _compact(labels)


def refine(embeddings: np.ndarray, labels: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Move each embedding to its nearest centroid (a few k-means steps); no cluster is emptied."""
    for _ in range(iterations):
        centres = centroids(embeddings, labels)
        moved = np.argmax(embeddings @ centres.T, axis=1)
        if np.array_equal(moved, labels) or len(np.unique(moved)) < len(centres):
            break
        labels = moved
    return labels


def _compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..k-1 in order of first appearance."""
    order = {label: index for index, label in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[label] for label in labels.tolist()], dtype=int)

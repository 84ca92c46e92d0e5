"""Global one-to-one assignment over the whole table (Hungarian method), not greedy per field."""

from __future__ import annotations

import numpy as np


def _linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular cost matrix.

    Uses ``scipy.optimize.linear_sum_assignment`` (it ships with scikit-learn).  Importing
    scipy.optimize costs ~0.4 s of start-up, so when scipy is not already loaded we run an
    equivalent O(n³) shortest-augmenting-path implementation in numpy; both give an optimal
    assignment (tests compare them).
    """
    import sys

    if "scipy.optimize" in sys.modules:
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(cost)
        return np.asarray(r), np.asarray(c)
    return hungarian(cost)


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jonker-Volgenant style shortest augmenting path (rows ≤ columns after transposing if needed)."""
    cost = np.asarray(cost, dtype=np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j] = row (1-based) matched to column j
    way = np.zeros(m + 1, dtype=np.int64)
    big = np.inf
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, big)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], big)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    rows, cols = [], []
    for j in range(1, m + 1):
        if p[j]:
            rows.append(p[j] - 1)
            cols.append(j - 1)
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    if transposed:
        r, c = c, r
    order = np.argsort(r)
    return r[order], c[order]


def assign(prob: np.ndarray, floor: float = 0.1) -> dict[int, int]:
    """One-to-one assignment maximising Σ logit(p) − logit(floor); pairs below ``floor`` stay unassigned.

    Every source row also gets a private "no counterpart" column of weight 0, so a field is only
    assigned when that beats leaving it (and its target) free.
    """
    n_s, n_t = prob.shape
    if n_s == 0 or n_t == 0:
        return {}
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    gain = np.log(p / (1 - p)) - np.log(floor / (1 - floor))
    cost = np.zeros((n_s, n_t + n_s))
    cost[:, :n_t] = -gain
    dummy = np.full((n_s, n_s), 1e6)
    np.fill_diagonal(dummy, 0.0)
    cost[:, n_t:] = dummy
    rows, cols = _linear_sum_assignment(cost)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if c < n_t and gain[r, c] > 0}

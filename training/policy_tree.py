"""Depth ≤ 2 policy trees (Athey & Wager's policy learning, on quantile-binned features).

An exhaustive search for the split(s) whose leaves, each given its best action, maximise the summed reward
(e.g. doubly robust scores net of cost). Unlike a regression tree on the pseudo-outcomes, it splits where the
*decision* changes, so it finds an interaction such as "bought both lines → e-mail" that a greedy MSE split
misses when neither feature alone moves the effect much. Every leaf keeps at least `min_leaf` rows.

With `kappa` > 0 each leaf scores an action by the lower confidence bound of its summed gain over a reference
action (sum − kappa × its standard error), and keeps the reference unless that bound is positive: a leaf then
deviates from the reference (e.g. the best constant policy) only where its rows give strong evidence, and a
search over many splits cannot win by collecting noise in every leaf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BINS = 16


def bin_edges(X: np.ndarray, max_bins: int = MAX_BINS) -> list[np.ndarray]:
    """Per feature, the candidate thresholds: midpoints of the distinct values when few, else inner quantiles."""
    edges = []
    for j in range(X.shape[1]):
        col = X[:, j][np.isfinite(X[:, j])]
        values = np.unique(col)
        if len(values) <= max_bins:
            cuts = (values[:-1] + values[1:]) / 2
        else:
            cuts = np.unique(np.quantile(col, np.linspace(0, 1, max_bins + 1)[1:-1]))
        edges.append(np.asarray(cuts, dtype=np.float64))
    return edges


def bin_codes(X: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Code b per value = number of thresholds below it, so "code ≤ t" ⇔ "x ≤ edges[t]"; NaN → the last bin."""
    out = np.empty(X.shape, dtype=np.int64)
    for j, cuts in enumerate(edges):
        col = np.where(np.isfinite(X[:, j]), X[:, j], np.inf)
        out[:, j] = np.searchsorted(cuts, col, side="left")
    return out


@dataclass(frozen=True)
class Split:
    feature: int
    threshold: float  # rows with x ≤ threshold go left (NaN goes right)


@dataclass(frozen=True)
class PolicyTree:
    """root split (or none), one optional split per side, and the action of each of the (up to) 4 leaves.

    Leaf id = 2 × side + sub-side (side 0 = left of the root; sub-side 0 when that side is not split)."""

    root: Split | None
    children: tuple[Split | None, Split | None]
    actions: tuple[int, int, int, int]
    value: float  # summed reward of the rows it was fitted on

    def leaf(self, X: np.ndarray) -> np.ndarray:
        if self.root is None:
            return np.zeros(len(X), dtype=np.int64)
        side = _goes_right(X, self.root)
        sub = np.zeros(len(X), dtype=np.int64)
        for s, child in enumerate(self.children):
            if child is not None:
                rows = side == s
                sub[rows] = _goes_right(X[rows], child)
        return 2 * side + sub

    def act(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.actions, dtype=np.int64)[self.leaf(X)]


def _goes_right(X: np.ndarray, split: Split) -> np.ndarray:
    col = X[:, split.feature]
    return (~(col <= split.threshold)).astype(np.int64)  # NaN compares False → right


def _pack(rewards: np.ndarray) -> np.ndarray:
    """Per row the channels the search accumulates: rewards (K), squared rewards (K), and 1 (the count)."""
    return np.column_stack([rewards, rewards**2, np.ones(len(rewards))])


def _leaf_score(packed: np.ndarray, kappa: float, reference: int) -> tuple[np.ndarray, np.ndarray]:
    """(best score, best action) of leaves given their packed sums (..., 2K + 1): the summed reward, or with
    kappa > 0 the summed gain over `reference` minus kappa standard errors (the reference itself scores 0)."""
    k = (packed.shape[-1] - 1) // 2
    sums, squares, n = packed[..., :k], packed[..., k : 2 * k], packed[..., -1:]
    if kappa <= 0:
        return sums.max(axis=-1), sums.argmax(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.clip(squares - np.where(n > 0, sums**2 / n, 0.0), 0.0, None))
    score = sums - kappa * spread
    score[..., reference] = 0.0
    return score.max(axis=-1), score.argmax(axis=-1)


def _best_one_split(hist: np.ndarray, min_leaf: int, kappa: float, reference: int) -> tuple[np.ndarray, np.ndarray]:
    """For a batch of row sets — hist (S, B, C) packed sums per bin — the best value with at most one split,
    and its threshold index (−1 = no split)."""
    total = hist.sum(axis=1)  # (S, C)
    no_split = _leaf_score(total, kappa, reference)[0]
    left = np.cumsum(hist, axis=1)[:, :-1]  # (S, B-1, C)
    if left.shape[1] == 0:
        return no_split, np.full(len(no_split), -1)
    n_left, n_total = left[..., -1], total[:, None, -1]
    value = _leaf_score(left, kappa, reference)[0] + _leaf_score(total[:, None, :] - left, kappa, reference)[0]
    value = np.where((n_left >= min_leaf) & (n_total - n_left >= min_leaf), value, -np.inf)
    best = value.argmax(axis=1)
    best_value = value[np.arange(len(value)), best]
    better = best_value > no_split + 1e-12
    return np.where(better, best_value, no_split), np.where(better, best, -1)


def fit_policy_tree(
    X: np.ndarray,
    rewards: np.ndarray,
    depth: int,
    min_leaf: int,
    max_bins: int = MAX_BINS,
    kappa: float = 0.0,
    reference: int = 0,
) -> PolicyTree:
    """The depth-`depth` (0, 1 or 2) tree maximising the summed score of each leaf's best action.

    `rewards` is (n, K): the reward of each of K actions for every row (for instance DR scores net of cost, with
    "no contact" as one column). With `kappa` > 0, scores are lower confidence bounds of the gain over action
    `reference` (see the module docstring)."""
    if depth not in (0, 1, 2):
        raise ValueError(f"depth must be 0, 1 or 2, got {depth}")
    if len(X) != len(rewards):
        raise ValueError(f"X has {len(X)} rows but rewards has {len(rewards)}")
    if not 0 <= reference < rewards.shape[1]:
        raise ValueError(f"reference must index a column of rewards, got {reference}")
    if kappa > 0:
        rewards = rewards - rewards[:, [reference]]
    packed = _pack(np.asarray(rewards, dtype=np.float64))
    score, action = _leaf_score(packed.sum(axis=0), kappa, reference)
    constant = PolicyTree(None, (None, None), (int(action),) * 4, float(score))
    if depth == 0 or len(X) < 2 * min_leaf:
        return constant
    edges = bin_edges(X, max_bins)
    codes = bin_codes(X, edges)
    bins = max_bins + 1
    best = constant
    for f1 in range(X.shape[1]):
        if len(edges[f1]) == 0:
            continue
        candidate = _best_for_root(codes, packed, edges, f1, bins, depth, min_leaf, kappa, reference)
        if candidate is not None and candidate.value > best.value + 1e-12:
            best = candidate
    return best


def _hist2(c1: np.ndarray, c2: np.ndarray, packed: np.ndarray, bins: int) -> np.ndarray:
    key = c1 * bins + c2
    channels = packed.shape[1]
    return np.stack([np.bincount(key, packed[:, a], bins * bins) for a in range(channels)], axis=-1).reshape(
        bins, bins, channels
    )


def _best_for_root(
    codes: np.ndarray,
    packed: np.ndarray,
    edges: list[np.ndarray],
    f1: int,
    bins: int,
    depth: int,
    min_leaf: int,
    kappa: float,
    reference: int,
) -> PolicyTree | None:
    """The best tree whose root splits on feature f1."""
    thresholds = len(edges[f1])
    c1 = codes[:, f1]
    h1 = _hist2(c1, np.zeros_like(c1), packed, bins)[:, 0, :]  # (B, C)
    left = np.cumsum(h1, axis=0)[:thresholds]  # (T, C) per root threshold
    total = h1.sum(axis=0)
    ok = (left[:, -1] >= min_leaf) & (total[-1] - left[:, -1] >= min_leaf)
    if not ok.any():
        return None
    # per side of the root and root threshold: (value, child feature, child threshold index)
    side_value = np.stack([_leaf_score(left, kappa, reference)[0], _leaf_score(total - left, kappa, reference)[0]])
    side_child = np.full((2, thresholds), -1)
    side_cut = np.full((2, thresholds), -1)
    if depth == 2:
        for f2 in range(codes.shape[1]):
            if len(edges[f2]) == 0:
                continue
            hist = _hist2(c1, codes[:, f2], packed, bins)
            cum = np.cumsum(hist, axis=0)[:thresholds]  # (T, B2, C): the left side of each root threshold
            for s, h in enumerate((cum, hist.sum(axis=0)[None] - cum)):
                value, cut = _best_one_split(h, min_leaf, kappa, reference)
                better = (value > side_value[s] + 1e-12) & (cut >= 0)
                side_value[s] = np.where(better, value, side_value[s])
                side_child[s] = np.where(better, f2, side_child[s])
                side_cut[s] = np.where(better, cut, side_cut[s])
    value = np.where(ok, side_value.sum(axis=0), -np.inf)
    t = int(value.argmax())
    return _assemble(codes, packed, edges, f1, t, side_child[:, t], side_cut[:, t], float(value[t]), kappa, reference)


def _assemble(
    codes: np.ndarray,
    packed: np.ndarray,
    edges: list[np.ndarray],
    f1: int,
    t: int,
    child: np.ndarray,
    cut: np.ndarray,
    value: float,
    kappa: float,
    reference: int,
) -> PolicyTree:
    """The tree for root (f1, t) and per-side child splits, with each leaf's best action on the fitting rows."""
    side = (codes[:, f1] > t).astype(np.int64)
    children: list[Split | None] = []
    leaf = 2 * side
    for s in (0, 1):
        if child[s] < 0:
            children.append(None)
            continue
        f2, t2 = int(child[s]), int(cut[s])
        children.append(Split(f2, float(edges[f2][t2])))
        leaf = np.where((side == s) & (codes[:, f2] > t2), leaf + 1, leaf)
    sums = np.stack([np.bincount(leaf, packed[:, a], 4) for a in range(packed.shape[1])], axis=-1)
    actions = tuple(int(a) for a in _leaf_score(sums, kappa, reference)[1])
    return PolicyTree(Split(f1, float(edges[f1][t])), (children[0], children[1]), actions, value)  # type: ignore[arg-type]


def describe(tree: PolicyTree, names: list[str] | None = None) -> list[str]:
    """The tree's splits in words, root first (`names` label the features; x<j> otherwise): what a marketer reads
    to see who the policy treats differently."""

    def split(s: Split) -> str:
        return f"{names[s.feature] if names else f'x{s.feature}'} <= {s.threshold:g}"

    if tree.root is None:
        return []
    out = [f"root: {split(tree.root)}"]
    for side, child in zip(("yes", "no"), tree.children, strict=True):
        if child is not None:
            out.append(f"{side}: {split(child)}")
    return out

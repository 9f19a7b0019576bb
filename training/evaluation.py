"""Test-set metrics and plots for the task models and their baselines.

Plots are built on `matplotlib.figure.Figure` with the Agg canvas, never through `pyplot`: nothing global is
touched, no window opens, and figures are freed with their last reference (training runs make dozens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_EPS = 1e-15


# ---------------------------------------------------------------------------------------------- metrics
def lift_at(y: Any, p: Any, fraction: float = 0.1) -> float:
    """Positive rate among the top `fraction` scores over the overall rate (1.0 = no better than random)."""
    y_arr = np.asarray(y, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    if len(y_arr) == 0 or y_arr.mean() == 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * len(y_arr))))
    top = np.argsort(-p_arr, kind="stable")[:k]
    return float(y_arr[top].mean() / y_arr.mean())


def binary_metrics(y: Any, p: Any) -> dict[str, float]:
    """Ranking (ROC/PR AUC, top-decile lift) and calibration (log loss, Brier) of binary probabilities."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y_arr = np.asarray(y, dtype=np.int64)
    p_arr = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    both = len(np.unique(y_arr)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_arr, p_arr)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_arr, p_arr)) if both else float("nan"),
        "log_loss": float(log_loss(y_arr, p_arr, labels=[0, 1])),
        "brier": float(brier_score_loss(y_arr, p_arr, pos_label=1)),
        "lift_top_decile": lift_at(y_arr, p_arr, 0.1),
        "prevalence": float(y_arr.mean()) if len(y_arr) else float("nan"),
        "n": float(len(y_arr)),
    }


def class_indices(y: Any, classes: Sequence[Any]) -> np.ndarray:
    """Labels → positions in `classes` (labels that already are positions pass through)."""
    values = np.asarray(y)
    index = {c: i for i, c in enumerate(classes)}
    if all(v in index for v in values.tolist()):
        return np.array([index[v] for v in values.tolist()], dtype=np.int64)
    if np.issubdtype(values.dtype, np.integer) and (values.size == 0 or values.max() < len(classes)):
        return values.astype(np.int64)
    unknown = sorted({str(v) for v in values.tolist() if v not in index})
    raise ValueError(f"labels {unknown} are not among classes {list(classes)}")


def multiclass_metrics(y: Any, proba: Any, classes: Sequence[Any]) -> dict[str, float]:
    """Macro F1, accuracy and log loss of (n, k) probabilities in `classes` order (see `confusion_frame`)."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    truth = class_indices(y, classes)
    probs = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    pred = probs.argmax(axis=1)
    return {
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(truth, pred)),
        "log_loss": float(log_loss(truth, np.clip(probs, _EPS, 1.0), labels=labels)),
        "n": float(len(truth)),
    }


def confusion_frame(y: Any, proba: Any, classes: Sequence[Any]) -> pd.DataFrame:
    """Counts with true classes as rows and predicted (argmax) classes as columns."""
    from sklearn.metrics import confusion_matrix

    truth = class_indices(y, classes)
    pred = np.asarray(proba).argmax(axis=1)
    matrix = confusion_matrix(truth, pred, labels=list(range(len(classes))))
    names = [str(c) for c in classes]
    return pd.DataFrame(matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def uplift_by_decile(uplift: Any, treated: Any, y: Any, n_bins: int = 10, weights: Any | None = None) -> pd.DataFrame:
    """Observed treated-minus-control outcome rate per bin of predicted uplift (bin 1 = highest uplift).

    A model whose uplift ranking is right shows observed uplift falling from the first bin to the last. On
    logged (non-randomised) contacts the comparison is confounded by the logging policy, so read it as a
    sanity check of direction, not as a causal estimate; inverse-propensity `weights` reduce that bias
    when the logging policy explored.
    """
    frame = pd.DataFrame(
        {"score": np.asarray(uplift, float), "treated": np.asarray(treated, bool), "y": np.asarray(y, float)}
    )
    frame["w"] = 1.0 if weights is None else np.asarray(weights, float)
    columns = [
        "bin",
        "n_treated",
        "n_control",
        "rate_treated",
        "rate_control",
        "observed_uplift",
        "mean_predicted_uplift",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    order = frame["score"].rank(method="first", ascending=False)
    frame["bin"] = np.ceil(order / len(frame) * n_bins).clip(1, n_bins).astype(int)
    rows = []
    for _, part in frame.groupby("bin"):
        t, c = part[part["treated"]], part[~part["treated"]]
        rate_t = np.average(t["y"], weights=t["w"]) if len(t) else np.nan
        rate_c = np.average(c["y"], weights=c["w"]) if len(c) else np.nan
        rows.append(
            {
                "bin": int(part["bin"].to_numpy()[0]),
                "n_treated": len(t),
                "n_control": len(c),
                "rate_treated": rate_t,
                "rate_control": rate_c,
                "observed_uplift": rate_t - rate_c,
                "mean_predicted_uplift": part["score"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def qini_coefficient(uplift: Any, treated: Any, y: Any) -> float:
    """Area between the Qini curve and the random-targeting line, per targeted row (0 = random ranking).

    Qini(k) = treated successes − control successes × (treated / control) among the k highest scores;
    positive values mean the ranking finds incremental outcomes faster than random targeting.
    """
    score = np.asarray(uplift, float)
    t = np.asarray(treated, bool)
    y_arr = np.asarray(y, float)
    if len(score) == 0 or t.all() or not t.any():
        return float("nan")
    order = np.argsort(-score, kind="stable")
    t, y_arr = t[order], y_arr[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(y_arr * t), np.cumsum(y_arr * ~t)
    qini = y_t - y_c * np.divide(n_t, n_c, out=np.zeros(len(n_t)), where=n_c > 0)
    k = np.arange(1, len(score) + 1)
    random_line = k / len(score) * qini[-1]
    return float(np.mean(qini - random_line) / len(score))


# ------------------------------------------------------------------------------------------------ plots
def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_roc(y: Any, scores: Mapping[str, Any], title: str = "ROC") -> Figure:
    """ROC curves of several scorers (model and baselines) on the same labels."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure()
    ax = fig.subplots()
    y_arr = np.asarray(y, dtype=np.int64)
    for name, p in scores.items():
        if len(np.unique(y_arr)) < 2:
            break
        fpr, tpr, _ = roc_curve(y_arr, np.asarray(p, float))
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y_arr, p):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return fig


def plot_calibration(y: Any, scores: Mapping[str, Any], n_bins: int = 10, title: str = "Reliability") -> Figure:
    """Reliability diagram: mean predicted vs observed rate per quantile bin of the prediction."""
    fig = _figure()
    ax = fig.subplots()
    y_arr = np.asarray(y, dtype=np.float64)
    for name, p in scores.items():
        p_arr = np.asarray(p, float)
        bins = pd.qcut(p_arr, q=n_bins, labels=False, duplicates="drop")
        table = pd.DataFrame({"p": p_arr, "y": y_arr, "bin": bins}).groupby("bin")[["p", "y"]].mean()
        ax.plot(table["p"], table["y"], marker="o", label=name)
    top = max([float(np.nanmax(np.asarray(p, float))) for p in scores.values()] + [float(y_arr.mean())])
    ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.legend(loc="upper left")
    return fig


def plot_lift_gain(y: Any, scores: Mapping[str, Any], title: str = "Cumulative gain and lift") -> Figure:
    """Cumulative gain (share of positives captured) and lift against the share of customers targeted."""
    fig = _figure(10.0, 4.5)
    gain_ax, lift_ax = fig.subplots(1, 2)
    y_arr = np.asarray(y, dtype=np.float64)
    total = y_arr.sum()
    for name, p in scores.items():
        order = np.argsort(-np.asarray(p, float), kind="stable")
        captured = np.cumsum(y_arr[order]) / max(total, 1.0)
        share = np.arange(1, len(y_arr) + 1) / max(len(y_arr), 1)
        gain_ax.plot(share, captured, label=name)
        lift_ax.plot(share, np.divide(captured, share), label=name)
    gain_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    lift_ax.axhline(1.0, linestyle="--", color="grey", linewidth=1)
    gain_ax.set(xlabel="share targeted", ylabel="share of positives captured", title="Cumulative gain")
    lift_ax.set(xlabel="share targeted", ylabel="lift", title="Lift", xlim=(0.01, 1))
    gain_ax.legend(loc="lower right")
    fig.suptitle(title)
    return fig


def plot_importance(importance: pd.Series, top: int = 25, title: str = "Feature importance (gain)") -> Figure:
    """Horizontal bars of the `top` most important inputs, largest on top."""
    values = importance.sort_values(ascending=False).head(top)[::-1]
    fig = _figure(7.0, max(2.5, 0.3 * len(values) + 1.0))
    ax = fig.subplots()
    ax.barh([str(i) for i in values.index], values.to_numpy(dtype=float))
    ax.set(xlabel=str(importance.name or "importance"), title=title)
    return fig


def plot_confusion(confusion: pd.DataFrame, normalize: bool = True, title: str = "Confusion matrix") -> Figure:
    """Heat map of a `confusion_frame`; rows normalised to recall when `normalize`."""
    counts = confusion.to_numpy(dtype=float)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0) if normalize else counts
    fig = _figure(6.0, 5.0)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(confusion.columns)), [str(c) for c in confusion.columns], rotation=45, ha="right")
    ax.set_yticks(range(len(confusion.index)), [str(i) for i in confusion.index])
    for (i, j), value in np.ndenumerate(shown):
        ax.text(j, i, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center", fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def plot_uplift_deciles(table: pd.DataFrame, title: str = "Uplift by decile of predicted uplift") -> Figure:
    """Observed vs mean predicted uplift per bin of a `uplift_by_decile` table."""
    fig = _figure()
    ax = fig.subplots()
    x = table["bin"].to_numpy()
    ax.bar(x - 0.2, table["observed_uplift"].to_numpy(dtype=float), width=0.4, label="observed")
    ax.bar(x + 0.2, table["mean_predicted_uplift"].to_numpy(dtype=float), width=0.4, label="predicted")
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set(xlabel="bin (1 = highest predicted uplift)", ylabel="treated − control rate", title=title)
    ax.legend()
    return fig


def plot_effects(table: pd.DataFrame, title: str = "Effect of a response on the content's goal") -> Figure:
    """Raw Wald estimate ± 2 SE and the shrunk effect used, per content (an `EffectTable.frame()`)."""
    fig = _figure()
    ax = fig.subplots()
    y = np.arange(len(table))
    ax.errorbar(table["estimate"], y, xerr=2 * table["se"], fmt="o", color="grey", label="raw estimate ± 2 SE")
    ax.scatter(table["effect"], y, color="tab:green", zorder=3, label="shrunk (used)")
    ax.axvline(0.0, color="grey", linewidth=1)
    ax.set_yticks(y, table["content"].tolist())
    ax.set(xlabel="P(goal | sent) − P(goal | none), per response", title=title)
    ax.legend()
    return fig

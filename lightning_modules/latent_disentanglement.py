"""Disentanglement of a latent space from labelled latents: StyleGAN's linear separability and DCI.

Both take latents X (N, d) of one space and the annotator's probabilities P (N, A) in [0, 1] of their images
(labels: P > 0.5), as an annotation pass writes them.

- :func:`linear_separability` (Karras et al. 2019, StyleGAN Sec. 4.2): per attribute, the least confident half
  of the samples is dropped, a linear SVM predicts the label from the latent, and H(Y | X) is the conditional
  entropy of the labels given the SVM's side (nats); the score is exp(sum over attributes of H). Lower is more
  separable. The interval: a Poisson bootstrap over samples, each replicate refitting every SVM with the
  samples reweighted.
- :func:`dci` (Eastwood & Williams 2018, as StyleSpace's Table 1 uses it): per attribute, a classifier of
  gradient-boosted trees predicts the label from the latent; the trees' split gains per latent dimension form
  the importance matrix R (d, A). Disentanglement: per dimension 1 - H_A(R_i / sum_j R_ij), averaged with weights
  sum_j R_ij / sum R; completeness: per attribute 1 - H_d(R_j / sum_i R_ij), averaged; informativeness: the
  classifiers' held-out accuracy, averaged. Every attribute with both labels among the samples is used
  (StyleSpace's script read two attribute columns only).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from latentnav.errors import ConfigError
from latentnav.lightning_modules.bootstrap import percentile_interval, poisson_weights


def _check(latents: torch.Tensor, probabilities: torch.Tensor) -> None:
    if latents.ndim != 2 or probabilities.ndim != 2 or len(latents) != len(probabilities):
        raise ConfigError(f"labelled latents: expected latents (N, d) and probabilities (N, A) with one N, got "
                          f"{tuple(latents.shape)} and {tuple(probabilities.shape)}")


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, weights: Optional[torch.Tensor] = None, l2: float = 1e-3,
                   steps: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear SVM (squared hinge loss, L2 penalty ``l2``), fitted by L-BFGS on standardised x (N, d) for labels
    y (N,) in {0, 1}, samples weighted by ``weights`` (N,) (default 1): returns (w (d,), b) in x's own units."""
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std
    sign = y.double() * 2 - 1
    weights = torch.ones(len(x), dtype=torch.float64) if weights is None else weights.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    total = weights.sum()

    def loss():
        optimizer.zero_grad()
        margin = (1 - sign * (xs @ w + b)).clamp_min(0)
        value = (weights * margin.pow(2)).sum() / total + l2 * w.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    w, b = w.detach(), b.detach()
    return w / std, b - (w / std * mean).sum()


def conditional_entropy(y: torch.Tensor, side: torch.Tensor, weights: Optional[torch.Tensor] = None) -> float:
    """H(Y | X) in nats of binary labels y (N,) given binary sides (N,), samples weighted by ``weights``."""
    weights = torch.ones(len(y), dtype=torch.float64) if weights is None else weights.double()
    total, h = weights.sum(), 0.0
    for s in (False, True):
        in_side = side == s
        mass = weights[in_side].sum()
        if mass <= 0:
            continue
        p1 = float(weights[in_side & y.bool()].sum() / mass)
        h += float(mass / total) * -sum(p * math.log(p) for p in (p1, 1 - p1) if p > 0)
    return h


def _separability_terms(x: torch.Tensor, probabilities: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """H(Y_j | X_j) per attribute (A,)."""
    out = torch.zeros(probabilities.shape[1], dtype=torch.float64)
    for j in range(probabilities.shape[1]):
        p = probabilities[:, j].double()
        confident = (p - 0.5).abs().argsort(descending=True)[: len(p) // 2]  # the more confident half
        y = (p[confident] > 0.5)
        if y.all() or not y.any():
            continue  # one label only: H(Y | X) = 0
        wj = None if weights is None else weights[confident]
        w, b = fit_linear_svm(x[confident], y, wj)
        out[j] = conditional_entropy(y, (x[confident].double() @ w + b) > 0, wj)
    return out


def linear_separability(latents: torch.Tensor, probabilities: torch.Tensor, replicates: int = 50,
                        seed: int = 0, indices: Optional[torch.Tensor] = None) -> dict:
    """StyleGAN's separability of ``latents`` (N, d) w.r.t. the attributes of ``probabilities`` (N, A).

    Returns {"separability": exp(sum H), "entropy" (A,) per attribute, "low", "high" (95 % Poisson bootstrap over
    samples, ``replicates`` refits; weights from ``indices`` (N,), default 0..N-1, so two spaces measured on the
    same samples pair up), "replicates" (R,)}."""
    _check(latents, probabilities)
    x = latents.detach().cpu().double()
    p = probabilities.detach().cpu().double()
    entropy = _separability_terms(x, p, None)
    ids = torch.arange(len(x)) if indices is None else indices.cpu()
    reps = torch.empty(0, dtype=torch.float64)
    if replicates > 1:
        w = poisson_weights(ids, replicates, seed).double()
        reps = torch.stack([_separability_terms(x, p, w[:, r]).sum().exp() for r in range(replicates)])
    low, high = percentile_interval(reps) if replicates > 1 else (torch.tensor(math.nan),) * 2
    return {"separability": float(entropy.sum().exp()), "entropy": entropy, "low": float(low), "high": float(high),
            "replicates": reps}


def _gbt_importance_and_accuracy(x_train, y_train, x_test, y_test, seed: int, max_iter: int) -> tuple[torch.Tensor, float]:
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        raise ConfigError("DCI needs scikit-learn's gradient-boosted trees: pip install 'latentnav[metrics]'") from None
    model = HistGradientBoostingClassifier(max_iter=max_iter, max_depth=3, early_stopping=False, random_state=seed)
    model.fit(x_train, y_train)
    importance = torch.zeros(x_train.shape[1], dtype=torch.float64)
    # The split gains of every tree, summed per feature: the impurity importance StyleSpace read from sklearn's
    # GradientBoostingClassifier (HistGradientBoosting, much faster, keeps them per node).
    for trees in model._predictors:
        for tree in trees:
            nodes = tree.nodes[tree.nodes["is_leaf"] == 0]
            importance.index_add_(0, torch.as_tensor(nodes["feature_idx"].astype("int64")),
                                  torch.as_tensor(nodes["gain"].astype("float64")))
    return importance, float((model.predict(x_test) == y_test).mean())


def _entropy_rows(probabilities: torch.Tensor, base: int) -> torch.Tensor:
    p = probabilities.clamp_min(1e-12)
    return -(probabilities * p.log()).sum(-1) / math.log(base)


def dci(latents: torch.Tensor, probabilities: torch.Tensor, names: Sequence[str], test_fraction: float = 0.2,
        seed: int = 0, max_iter: int = 100, min_share: float = 0.02) -> dict:
    """DCI of ``latents`` (N, d) for the attributes of ``probabilities`` (N, A) (labels P > 0.5).

    Attributes whose rarer label is under ``min_share`` of the samples are left out (a tree cannot learn a
    label it almost never sees; their names are returned). Returns {"disentanglement", "completeness",
    "informativeness", "importance" (d, A'), "attributes" (the A' used), "left_out"}."""
    _check(latents, probabilities)
    x = latents.detach().cpu().double().numpy()
    labels = (probabilities.detach().cpu() > 0.5).numpy()
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    test, train = order[: int(n * test_fraction)], order[int(n * test_fraction):]
    used, left_out, columns, accuracy = [], [], [], []
    for j, name in enumerate(names):
        share = labels[:, j].mean()
        if min(share, 1 - share) < min_share:
            left_out.append(name)
            continue
        importance, acc = _gbt_importance_and_accuracy(x[train], labels[train, j], x[test], labels[test, j], seed, max_iter)
        used.append(name)
        columns.append(importance)
        accuracy.append(acc)
    if not used:
        raise ConfigError(f"DCI: no attribute has both labels in at least {min_share:.0%} of the {n} samples")
    R = torch.stack(columns, 1).clamp_min(0)  # (d, A')
    d, a = R.shape
    disentanglement_i = 1 - _entropy_rows(R / R.sum(1, keepdim=True).clamp_min(1e-12), a) if a > 1 else torch.ones(d)
    rho = R.sum(1) / R.sum()
    completeness_j = 1 - _entropy_rows((R / R.sum(0, keepdim=True).clamp_min(1e-12)).T, d)
    return {"disentanglement": float((rho * disentanglement_i).sum()), "completeness": float(completeness_j.mean()),
            "informativeness": float(sum(accuracy) / len(accuracy)), "importance": R, "attributes": used,
            "left_out": left_out}

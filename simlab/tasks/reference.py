"""Reference task families with known answers, for validating learners before societies.

* ``sinusoid_tasks``: the few-shot regression benchmark of Finn, Abbeel & Levine (2017),
  "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML, section 5.1:
  y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5]. A learner that meta-learns
  on it and adapts in one or a few steps is the canonical sanity check of a MAML implementation.
* ``linear_gaussian_tasks``: logistic (binary) or softmax (multiclass) tasks whose weights are
  drawn around a shared mean, w_t = mu + spread * N(0, I). This is the generative model behind
  partial pooling (a multilevel/hierarchical logistic regression), so a partial-pooling
  estimator is the (approximately) Bayes-optimal reference: a meta-learner should approach it.

Numpy only (no torch), seeded by explicit ``numpy.random.Generator``s.
"""
from __future__ import annotations

import numpy as np

from simlab.tasks.task import Task

SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, float(np.pi))
SINUSOID_X = (-5.0, 5.0)


def _check_sizes(family: str, n_tasks: int, shots: int, query: int) -> None:
    """One clear error for impossible task sizes."""
    for field, value in (("n_tasks", n_tasks), ("shots", shots), ("query", query)):
        if int(value) != value or value < 1:
            raise ValueError(f"{family}: {field}={value!r} is invalid; it must be an integer >= 1")


def sinusoid_tasks(n_tasks: int, shots: int, query: int, rng: np.random.Generator,
                   noise: float = 0.0) -> list[Task]:
    """``n_tasks`` sinusoid regression tasks with ``shots`` support and ``query`` query points.

    Finn et al. (2017) settings: amplitude U[0.1, 5], phase U[0, pi], inputs U[-5, 5],
    y = amplitude * sin(x - phase) (+ optional Gaussian ``noise``; the paper has none).
    ``oracle_query`` is the noise-free E[y]; ``info`` holds the task's amplitude and phase.
    """
    _check_sizes("sinusoid_tasks", n_tasks, shots, query)
    if not noise >= 0.0:
        raise ValueError(f"sinusoid_tasks: noise={noise!r} is invalid; it must be >= 0")
    amp = rng.uniform(*SINUSOID_AMPLITUDE, size=n_tasks)
    phase = rng.uniform(*SINUSOID_PHASE, size=n_tasks)
    x = rng.uniform(*SINUSOID_X, size=(n_tasks, shots + query, 1)).astype(np.float32)
    mean = (amp[:, None] * np.sin(x[..., 0] - phase[:, None])).astype(np.float32)
    y = mean + (noise * rng.standard_normal(mean.shape)).astype(np.float32) if noise else mean
    return [Task(x_support=x[i, :shots], y_support=y[i, :shots], x_query=x[i, shots:],
                 y_query=y[i, shots:], target="regression", oracle_query=mean[i, shots:],
                 info={"family": "sinusoid", "task": i, "amplitude": float(amp[i]),
                       "phase": float(phase[i])})
            for i in range(n_tasks)]


def linear_gaussian_mean(n_features: int, n_classes: int, family_seed: int,
                         mean_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The family's shared weights ``[D, C']`` and biases ``[C']`` (C' = 1 for binary).

    Drawn from ``numpy.random.default_rng(family_seed)``, so meta-training and test tasks of the
    same family (same seed, different task ``rng``) share one mean.
    """
    fam = np.random.default_rng(family_seed)
    out = 1 if n_classes == 2 else n_classes
    weights = mean_scale * fam.standard_normal((n_features, out)) / np.sqrt(n_features)
    bias = 0.5 * mean_scale * fam.standard_normal(out)
    return weights, bias


def linear_gaussian_tasks(n_tasks: int, shots: int, query: int, rng: np.random.Generator,
                          n_features: int = 4, n_classes: int = 2, spread: float = 0.5,
                          mean_scale: float = 2.0, family_seed: int = 0) -> list[Task]:
    """Logistic (``n_classes=2``) or softmax tasks with weights drawn around a shared mean.

    Per task t: W_t = M + spread * N(0, I) and b_t = b + spread * N(0, I), where (M, b) come
    from ``linear_gaussian_mean(n_features, n_classes, family_seed, mean_scale)``; features
    x ~ N(0, I_D); y ~ Bernoulli(sigmoid(x W_t + b_t)) or Categorical(softmax(x W_t + b_t)).
    ``spread = 0`` gives identical tasks (full pooling is optimal); a large spread makes tasks
    unrelated (no pooling is optimal); in between, partial pooling is the reference.
    ``oracle_query`` holds the true P(y=1) ``[Q]`` or class probabilities ``[Q, C]``.
    """
    _check_sizes("linear_gaussian_tasks", n_tasks, shots, query)
    if int(n_features) != n_features or n_features < 1:
        raise ValueError(f"linear_gaussian_tasks: n_features={n_features!r} is invalid; "
                         "it must be an integer >= 1")
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"linear_gaussian_tasks: n_classes={n_classes!r} is invalid; "
                         "it must be an integer >= 2 (2 means binary)")
    if not spread >= 0.0:
        raise ValueError(f"linear_gaussian_tasks: spread={spread!r} is invalid; it must be >= 0")
    mean_w, mean_b = linear_gaussian_mean(n_features, n_classes, family_seed, mean_scale)
    w = mean_w + spread * rng.standard_normal((n_tasks, *mean_w.shape))
    b = mean_b + spread * rng.standard_normal((n_tasks, *mean_b.shape))
    x = rng.standard_normal((n_tasks, shots + query, n_features)).astype(np.float32)
    logits = np.einsum("tnd,tdc->tnc", x, w) + b[:, None, :]
    if n_classes == 2:
        prob = (1.0 / (1.0 + np.exp(-logits[..., 0]))).astype(np.float32)
        y = (rng.uniform(size=prob.shape) < prob).astype(np.float32)
        target = "binary"
    else:
        z = np.exp(logits - logits.max(-1, keepdims=True))
        prob = (z / z.sum(-1, keepdims=True)).astype(np.float32)
        u = rng.uniform(size=prob.shape[:-1] + (1,))
        y = np.minimum((np.cumsum(prob, -1) < u).sum(-1), n_classes - 1).astype(np.int64)
        target = "multiclass"
    return [Task(x_support=x[i, :shots], y_support=y[i, :shots], x_query=x[i, shots:],
                 y_query=y[i, shots:], target=target, n_classes=int(n_classes),
                 oracle_query=prob[i, shots:],
                 info={"family": "linear_gaussian", "task": i, "spread": float(spread),
                       "family_seed": int(family_seed)})
            for i in range(n_tasks)]

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

from simlab.errors import ScenarioError
from simlab.tasks.task import Task

SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, float(np.pi))
SINUSOID_X = (-5.0, 5.0)


def _check_sizes(family: str, n_tasks: int, shots: int, query: int) -> None:
    """One clear error for impossible task sizes."""
    for field, value in (("n_tasks", n_tasks), ("shots", shots), ("query", query)):
        if int(value) != value or value < 1:
            raise ScenarioError(f"{family}: {field}={value!r} is invalid; it must be an integer "
                                ">= 1")


def sinusoid_tasks(n_tasks: int, shots: int, query: int, rng: np.random.Generator,
                   noise: float = 0.0) -> list[Task]:
    """``n_tasks`` sinusoid regression tasks with ``shots`` support and ``query`` query points.

    Finn et al. (2017) settings: amplitude U[0.1, 5], phase U[0, pi], inputs U[-5, 5],
    y = amplitude * sin(x - phase) (+ optional Gaussian ``noise``; the paper has none).
    ``oracle_query`` is the noise-free E[y]; ``info`` holds the task's amplitude and phase.
    """
    _check_sizes("sinusoid_tasks", n_tasks, shots, query)
    if not noise >= 0.0:
        raise ScenarioError(f"sinusoid_tasks: noise={noise!r} is invalid; it must be >= 0")
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
        raise ScenarioError(f"linear_gaussian_tasks: n_features={n_features!r} is invalid; "
                            "it must be an integer >= 1")
    if int(n_classes) != n_classes or n_classes < 2:
        raise ScenarioError(f"linear_gaussian_tasks: n_classes={n_classes!r} is invalid; "
                            "it must be an integer >= 2 (2 means binary)")
    if not spread >= 0.0:
        raise ScenarioError(f"linear_gaussian_tasks: spread={spread!r} is invalid; it must be >= 0")
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


def drifting_regression_stream(rng: np.random.Generator, n_groups: int = 10, n_waves: int = 8,
                               shots: int = 10, query: int = 20, n_features: int = 3,
                               q_b: float = 0.01, q_u: float = 0.05, sigma_u: float = 0.5,
                               noise: float = 1.0, jump_wave: int | None = None,
                               jump_sd: float = 1.0, target: str = "regression"):
    """A linear-Gaussian random-walk multilevel family where the Kalman filter is exact.

    Group g at wave t: ``y = [x, 1] @ (b_t + u_{g,t}) + N(0, noise^2)``, x ~ N(0, I_D);
    ``b_t = b_{t-1} + N(0, q_b I)``, ``u_{g,t} = u_{g,t-1} + N(0, q_u Sigma_u)``,
    ``u_{g,0} ~ N(0, Sigma_u)`` with a full (intercept-slope correlated) ``Sigma_u`` of scale
    ``sigma_u^2``; at ``jump_wave`` the population coefficients jump by ``N(0, jump_sd^2 I)``
    (recorded as an abrupt ShiftEvent). ``stream.meta["truth"]`` holds every true parameter,
    for :func:`drifting_bayes_predictions`. Returns a TaskStream (regression, oracle = E[y]);
    ``target="binary"``: y ~ Bernoulli(sigmoid(linear predictor)) instead (``noise`` unused),
    the same drifting dynamic logistic multilevel model.
    """
    from simlab.tasks.task import ShiftEvent, TaskStream   # local: keeps the module header small

    _check_sizes("drifting_regression_stream", n_groups, shots, query)
    if int(n_waves) != n_waves or n_waves < 1:
        raise ScenarioError(f"drifting_regression_stream: n_waves={n_waves!r} is invalid; it must "
                            "be an integer >= 1")
    if target not in ("regression", "binary"):
        raise ScenarioError(f"drifting_regression_stream: target={target!r}; use 'regression' or "
                            "'binary'")
    p = n_features + 1
    a = rng.standard_normal((p, p)) / np.sqrt(p)
    corr = a @ a.T + np.eye(p)
    d = np.sqrt(np.diag(corr))
    sig_u = sigma_u ** 2 * corr / np.outer(d, d)
    b = rng.standard_normal(p)
    u = rng.multivariate_normal(np.zeros(p), sig_u, size=n_groups)
    chol_u = np.linalg.cholesky(sig_u)
    waves, shifts = [], []
    for t in range(n_waves):
        if t:
            b = b + np.sqrt(q_b) * rng.standard_normal(p)
            u = u + np.sqrt(q_u) * rng.standard_normal((n_groups, p)) @ chol_u.T
        if jump_wave is not None and t == jump_wave:
            jump = jump_sd * rng.standard_normal(p)
            b = b + jump
            shifts.append(ShiftEvent(wave=t, tick=t, kind="abrupt", name="coefficient_jump",
                                     target="coef", size=float(np.linalg.norm(jump))))
        x = rng.standard_normal((n_groups, shots + query, n_features)).astype(np.float32)
        mean = np.einsum("gnd,gd->gn", x, (b + u)[:, :-1]) + (b + u)[:, -1:]
        if target == "binary":
            mean = 1.0 / (1.0 + np.exp(-mean))
            y = (rng.uniform(size=mean.shape) < mean).astype(np.float32)
        else:
            y = (mean + noise * rng.standard_normal(mean.shape)).astype(np.float32)
        waves.append([Task(x_support=x[g, :shots], y_support=y[g, :shots],
                           x_query=x[g, shots:], y_query=y[g, shots:], target=target,
                           oracle_query=mean[g, shots:].astype(np.float32),
                           info={"family": "drifting_regression", "group": g, "wave": t})
                      for g in range(n_groups)])
    truth = {"q_b": q_b, "q_u": q_u, "sigma_u": sig_u, "noise": noise, "jump_wave": jump_wave,
             "jump_sd": jump_sd, "n_groups": n_groups}
    return TaskStream(waves, shifts, {"family": "drifting_regression", "truth": truth})


def drifting_bayes_predictions(stream, shots: int, prior_sd: float = 10.0
                               ) -> list[np.ndarray]:
    """The Bayes-optimal per-task predictions on a :func:`drifting_regression_stream`.

    A plain covariance-form Kalman filter over the joint state (b, u_1, ..., u_G) with the true
    parameters (and the jump's time and variance), written independently of the learners:
    wave t's tasks are predicted from the state through wave t-1 conditioned on each task's own
    first ``shots`` support respondents (the information a learner's ``adapt`` has), then the
    whole wave (support and query) updates the state, one group's block of observations at a
    time. Returns, per wave, the predicted query means ``[G, Q]`` (wave 0 from the vague prior
    ``b ~ N(0, prior_sd^2 I)``).
    """
    tr = stream.meta["truth"]
    g_n = tr["n_groups"]
    p = stream.n_features + 1
    n = p * (1 + g_n)
    m = np.zeros(n)
    s = np.zeros((n, n))
    s[:p, :p] = prior_sd ** 2 * np.eye(p)
    for g in range(g_n):
        s[p * (1 + g):p * (2 + g), p * (1 + g):p * (2 + g)] = tr["sigma_u"]
    r2 = tr["noise"] ** 2
    out = []
    for t, wave in enumerate(stream.waves):
        if t:
            s[:p, :p] += tr["q_b"] * np.eye(p)
            for g in range(g_n):
                s[p * (1 + g):p * (2 + g), p * (1 + g):p * (2 + g)] += tr["q_u"] * tr["sigma_u"]
        if tr["jump_wave"] is not None and t == tr["jump_wave"]:
            s[:p, :p] += tr["jump_sd"] ** 2 * np.eye(p)
        preds = []
        for task in wave:
            g = task.info["group"]
            h = np.zeros((p, n))
            h[:, :p] = np.eye(p)
            h[:, p * (1 + g):p * (2 + g)] = np.eye(p)
            mu, cov = h @ m, h @ s @ h.T            # prior of theta_g = b + u_g
            xs = np.c_[task.x_support[:shots], np.ones(shots)]
            gain = cov @ xs.T @ np.linalg.inv(xs @ cov @ xs.T + r2 * np.eye(shots))
            theta = mu + gain @ (task.y_support[:shots] - xs @ mu)
            preds.append(np.c_[task.x_query, np.ones(task.n_query)] @ theta)
        out.append(np.stack(preds))
        for task in wave:                            # reveal the wave: exact Kalman update
            g = task.info["group"]
            xa = np.r_[task.x_support, task.x_query]
            ya = np.r_[task.y_support, task.y_query]
            xd = np.c_[xa, np.ones(len(xa))]
            hm = np.zeros((len(xa), n))
            hm[:, :p] = xd
            hm[:, p * (1 + g):p * (2 + g)] = xd
            inn = hm @ s @ hm.T + r2 * np.eye(len(xa))
            gain = s @ hm.T @ np.linalg.inv(inn)
            m = m + gain @ (ya - hm @ m)
            s = s - gain @ hm @ s
            s = 0.5 * (s + s.T)
    return out


def group_blind_bayes_predictions(stream, shots: int, prior_sd: float = 10.0
                                  ) -> list[np.ndarray]:
    """The Bayes-optimal predictions on a :func:`drifting_regression_stream` for a learner that
    does not know which tasks share a group: the optimum of the classic meta-learning setting.

    The true parameters are known, but each task's group effect is treated as a fresh draw from
    its marginal ``N(0, Sigma_u (1 + t q_u))`` at wave t: a Kalman filter over the population
    coefficients b alone, each revealed task's rows entering with covariance
    ``X (Sigma_u,t) X' + noise^2 I`` (its group effect integrated out), and each task predicted
    from ``theta ~ N(E[b], Cov[b] + Sigma_u,t)`` conditioned on its first ``shots`` support
    rows. :func:`drifting_bayes_predictions` is the optimum with the group identity (it tracks
    every u_g); the gap between the two is what a learner gains from a group memory. Returns,
    per wave, the predicted query means ``[G, Q]``.
    """
    tr = stream.meta["truth"]
    p = stream.n_features + 1
    m, s, r2 = np.zeros(p), prior_sd ** 2 * np.eye(p), tr["noise"] ** 2
    out = []
    for t, wave in enumerate(stream.waves):
        if t:
            s = s + tr["q_b"] * np.eye(p)
        if tr["jump_wave"] is not None and t == tr["jump_wave"]:
            s = s + tr["jump_sd"] ** 2 * np.eye(p)
        sig = tr["sigma_u"] * (1.0 + t * tr["q_u"])
        preds = []
        for task in wave:
            xs = np.c_[task.x_support[:shots], np.ones(shots)]
            cov = s + sig
            gain = cov @ xs.T @ np.linalg.inv(xs @ cov @ xs.T + r2 * np.eye(shots))
            theta = m + gain @ (task.y_support[:shots] - xs @ m)
            preds.append(np.c_[task.x_query, np.ones(task.n_query)] @ theta)
        out.append(np.stack(preds))
        for task in wave:                            # reveal the wave: update b only
            xd = np.c_[np.r_[task.x_support, task.x_query],
                       np.ones(task.shots + task.n_query)]
            ya = np.r_[task.y_support, task.y_query]
            inn = xd @ (s + sig) @ xd.T + r2 * np.eye(len(ya))
            gain = s @ xd.T @ np.linalg.inv(inn)
            m = m + gain @ (ya - xd @ m)
            s = s - gain @ xd @ s
            s = 0.5 * (s + s.T)
    return out

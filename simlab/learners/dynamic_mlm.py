"""Dynamic multilevel regression: population and group coefficients that drift over waves.

The survey methodologist's model of a changing society (a dynamic GLM, West, Harrison & Migon
1985, "Dynamic generalized linear models and Bayesian forecasting", JASA; with group effects as
in a multilevel model). For group g at wave t, with ``x`` the features plus an intercept:

    y_{g,t,i} ~ logistic / softmax / Gaussian(sigma2) GLM with eta = x_i^T (b_t + u_{g,t})
    b_t     = b_{t-1}     + N(0, Q_b)          population coefficients, a random walk
    u_{g,t} = u_{g,t-1}   + N(0, Q_u)          group effects persist and drift
    u_{g,first} ~ N(0, Sigma_u)                full (intercept-slope) covariance

The state ``s = (b, u_1, ..., u_G)`` (every group seen so far) is filtered wave by wave with a
Laplace / iterated extended Kalman update: predict (``S += Q`` per elapsed wave), then the
posterior mode of the wave's joint log posterior by damped Newton iterations (the
posterior-mode filter of Fahrmeir 1992, "Posterior mode estimation by extended Kalman
filtering for multivariate dynamic generalized linear models", JASA) and its inverse Hessian as
the new covariance. For Gaussian responses one Newton step is exact, so the filter is the exact
Kalman filter of the linear-Gaussian model. The state covariance is dense (cross-covariances
through ``b`` are kept); one update costs O((G K)^3) with K = (D+1) x outputs.

Hyperparameters by empirical Bayes on the warm-up waves (the first ``meta_fit``):
``(b_0, Sigma_u, sigma2)`` by Laplace EM of the static full-covariance multilevel GLM over the
warm-up (group, wave) tasks (Laird & Ware 1982; Breslow & Clayton 1993), and the drift
covariances ``Q_b = q_b Sigma_u``, ``Q_u = q_u Sigma_u`` with ``(q_b, q_u)`` maximising the
filter's one-step-ahead predictive log-likelihood of the warm-up waves (the prediction-error
decomposition of the marginal likelihood; Harvey 1989, ch. 3) over ``eb_grid`` (a coordinate
search: q_u at the middle q_b, then q_b);
``drift_scale`` multiplies both afterwards (tunable). Pre-training (``[evaluation.pretrain]``,
``DynamicMLM.pretrain``): the static EM on the simulated tasks alone gives ``(b_0, Sigma_u,
sigma2)`` (at most the pre-training budget's iterations and seconds), which start the warm-up EM
and are its prior, worth ``prior_tasks`` pseudo-tasks: the conjugate MAP-EM of
``partial_pooling``, with s = prior_tasks / (n + prior_tasks) for n tasks, b_0 = (1 - s) mean(m_t)
+ s b_p, Sigma_u = (1 - s) mean((m_t - b_0)(m_t - b_0)^T + P_t) + s (Sigma_p + (b_p - b_0)
(b_p - b_0)^T) and sigma2 = (1 - s) (the data's) + s sigma2_p; the drift factors are still chosen
on the warm-up waves.

``adapt``: each task's coefficients are the MAP under its group's one-step-ahead predictive
prior ``N(m_b + m_g, S_bb + S_gg + S_bg + S_gb + (Q_b + Q_u) gap)``; a group seen for the first
time (or id -1) falls back to the population ``N(m_b, S_bb + Q_b gap + Sigma_u)``. ``steps``
counts Newton iterations from the prior mean (0 = the filtered prediction itself).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from simlab.errors import DataError
from simlab.learners import glm
from simlab.learners.base import (
    Adapted,
    Budget,
    Float,
    Int,
    Learner,
    check,
    check_int,
    check_number,
)
from simlab.learners.episodes import (
    check_batch,
    check_steps,
    check_tasks,
    normalise_weights,
)
from simlab.learners.glm import GLM_DTYPE, GLMAdapted
from simlab.learners.roles import Role
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import TargetKind, Task

_STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0)
JITTER = 1e-9


# ------------------------------------------------------------------ batched MAP, full prior

def _task_objective(beta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                    target: TargetKind, sigma2: torch.Tensor | float, mean: torch.Tensor,
                    prec: torch.Tensor) -> torch.Tensor:
    """Negative log posterior of ``beta [..., B, k]`` under ``N(mean [B, k], prec^-1)``."""
    shape = (*beta.shape[:-1], x.shape[-1], -1)
    eta = torch.einsum("bnp,...bpo->...bno", x, beta.reshape(shape))
    d = beta - mean
    return glm.nll(eta, y, w, target, sigma2) + 0.5 * torch.einsum("...bi,bij,...bj->...b", d,
                                                                prec, d)


def map_path(mean: torch.Tensor, prec: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             w: torch.Tensor, target: TargetKind, sigma2: torch.Tensor | float,
             steps: tuple[int, ...], init: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Damped Newton from the prior mean (or ``init``) for every task at once, under a
    full-precision prior.

    ``mean [B, k]``, ``prec [B, k, k]``; returns the iterates at ``steps`` ``[S, B, k]`` and the
    Hessian of the negative log posterior at the last iterate ``[B, k, k]`` (its inverse is the
    Laplace covariance). Each task takes the best of a few step sizes (0 included), so the
    objective never increases.
    """
    beta, kept = (mean if init is None else init).clone(), {}
    b = mean.shape[0]
    p = x.shape[-1]
    t = torch.tensor(_STEP_SIZES, dtype=mean.dtype, device=mean.device).view(-1, 1, 1)
    for i in range(max(steps, default=0) + 1):
        if i in steps:
            kept[i] = beta
        g, h = glm.grad_hess(beta.reshape(b, p, -1), x, y, w, target, sigma2)
        g = g + torch.einsum("bij,bj->bi", prec, beta - mean)
        h = h + prec
        if i == max(steps, default=0):
            break
        delta = _spd_solve(h, g)
        cand = beta - t * delta
        obj = torch.nan_to_num(_task_objective(cand, x, y, w, target, sigma2, mean, prec),
                               nan=math.inf)
        beta = cand[obj.argmin(0), torch.arange(b, device=mean.device)]
    return torch.stack([kept[s] for s in steps]), h


def _sym_inv(a: torch.Tensor) -> torch.Tensor:
    """Inverse of symmetric positive-definite matrices (Cholesky; jitter if needed)."""
    a = 0.5 * (a + a.transpose(-1, -2))
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info > 0).any()):
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        chol = torch.linalg.cholesky(a + eye * (1e-8 * a.diagonal(0, -2, -1).abs().mean() + 1e-10))
    return torch.cholesky_inverse(chol)


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^-1 b`` for symmetric positive-definite ``a`` (Cholesky; LU where it fails);
    non-finite entries become 0 (no step)."""
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info > 0).any()):
        return torch.nan_to_num(torch.linalg.solve_ex(a, b)[0])
    return torch.nan_to_num(torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1))


def _psd_floor(a: torch.Tensor, floor: float) -> torch.Tensor:
    """The nearest symmetric matrix with every eigenvalue >= ``floor``."""
    vals, vecs = torch.linalg.eigh(0.5 * (a + a.transpose(-1, -2)))
    return (vecs * vals.clamp_min(floor).unsqueeze(-2)) @ vecs.transpose(-1, -2)


# ------------------------------------------------------------------------ wave data, stacked

@dataclass
class _Wave:
    """One wave's revealed tasks, stacked: design ``x [T, N, P]``, ``y [T, N, O]``, normalised
    weights ``w [T, N]``, group ids ``g [T]`` (numpy) and the wave number."""

    wave: int
    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    g: np.ndarray


def _waves(tasks: Sequence[Task], target: TargetKind, n_classes: int, device: torch.device,
           fallback_wave: int) -> list[_Wave]:
    """Group revealed tasks by ``info["wave"]`` (missing: ``fallback_wave``), in wave order."""
    by: dict[int, list[Task]] = {}
    for t in tasks:
        by.setdefault(int(t.info.get("wave", fallback_wave)), []).append(t)
    out = []
    for wave in sorted(by):
        ts = by[wave]
        xr, yr, wr = glm.pool(ts, device)
        out.append(_Wave(wave, glm.design(xr), glm.encode(yr, target, n_classes), wr.to(GLM_DTYPE),
                         np.array([t.group_id for t in ts], np.int64)))
    return out


# ------------------------------------------------------------------------------------ filter

@dataclass
class _Filter:
    """The filtered state: mean ``m [(1+G) k]`` and dense covariance ``S``; block 0 is the
    population ``b``, block ``1 + index[g]`` group g's effect ``u_g``."""

    m: torch.Tensor
    S: torch.Tensor
    index: dict[int, int]
    last_wave: int | None = None

    @classmethod
    def start(cls, b0: torch.Tensor, cov0: torch.Tensor) -> _Filter:
        return cls(b0.clone(), cov0.clone(), {})

    @property
    def k(self) -> int:
        return int(self.m.shape[0] // (1 + len(self.index)))

    def add_groups(self, ids: np.ndarray, sigma_u: torch.Tensor) -> None:
        """Append an independent ``N(0, Sigma_u)`` block for each group not seen before."""
        new = [int(g) for g in dict.fromkeys(ids.tolist()) if int(g) not in self.index]
        if not new:
            return
        k, n = sigma_u.shape[0], self.m.shape[0]
        for g in new:
            self.index[g] = len(self.index)
        grow = k * len(new)
        self.m = torch.cat([self.m, self.m.new_zeros(grow)])
        S = self.S.new_zeros(n + grow, n + grow)
        S[:n, :n] = self.S
        S[n:, n:] = torch.block_diag(*[sigma_u] * len(new))
        self.S = S

    def predict(self, wave: int, q_b: torch.Tensor, q_u: torch.Tensor) -> None:
        """Random-walk prediction step: ``S += gap * blockdiag(Q_b, Q_u, ..., Q_u)``."""
        gap = 0 if self.last_wave is None else max(wave - self.last_wave, 0)
        if gap:
            k = self.k
            blocks = self.S.view(1 + len(self.index), k, 1 + len(self.index), k)
            idx = torch.arange(1 + len(self.index))
            blocks[idx, :, idx, :] += gap * torch.cat([q_b[None], q_u.expand(len(self.index),
                                                                              k, k)])
        self.last_wave = wave if self.last_wave is None else max(wave, self.last_wave)

    def update(self, data: _Wave, target: TargetKind, sigma2: torch.Tensor, newton: int
               ) -> None:
        """Laplace (iterated EKF) update with every respondent of the wave, all groups at once.

        Joint negative log posterior: ``sum_t nll_t(b + u_{g_t}) + 1/2 (s - m)^T S^-1 (s - m)``;
        its Newton steps scatter each task's gradient / Hessian into the (b, u_g) blocks.
        """
        k, nb = self.k, 1 + len(self.index)
        ui = torch.as_tensor([1 + self.index[int(g)] for g in data.g], dtype=torch.long)
        bi = torch.zeros_like(ui)
        prec0 = _sym_inv(self.S)
        m0, s = self.m, self.m.clone()
        p = data.x.shape[-1]

        def theta(state: torch.Tensor) -> torch.Tensor:
            blocks = state.view(-1, nb, k)
            return (blocks[:, 0:1] + blocks[:, ui]).reshape(-1, len(ui), p, k // p)

        def objective(states: torch.Tensor) -> torch.Tensor:
            eta = torch.einsum("tnp,stpo->stno", data.x, theta(states))
            d = states - m0
            return glm.nll(eta, data.y, data.w, target, sigma2).sum(-1) + 0.5 * ((d @ prec0) * d
                                                                             ).sum(-1)

        steps = torch.tensor(_STEP_SIZES, dtype=s.dtype).unsqueeze(1)
        for it in range(newton + 1):
            g, h = glm.grad_hess(theta(s)[0], data.x, data.y, data.w, target, sigma2)
            grad = s.new_zeros(nb, k)
            grad.index_add_(0, bi, g)
            grad.index_add_(0, ui, g)
            hess = s.new_zeros(nb, nb, k, k)
            for r, c in ((bi, bi), (bi, ui), (ui, bi), (ui, ui)):
                hess.index_put_((r, c), h, accumulate=True)
            H = hess.permute(0, 2, 1, 3).reshape(nb * k, nb * k) + prec0
            if it == newton:
                break
            G = grad.reshape(-1) + prec0 @ (s - m0)
            delta = _spd_solve(H, G)
            cand = s - steps * delta
            s = cand[torch.nan_to_num(objective(cand), nan=math.inf).argmin()]
        self.m, self.S = s, _sym_inv(H)

    def prior_for(self, groups: torch.Tensor, wave: torch.Tensor, q_b: torch.Tensor,
                  q_u: torch.Tensor, sigma_u: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step-ahead prior of each task's coefficients: mean ``[B, k]``, cov ``[B, k, k]``."""
        k, nb = self.k, 1 + len(self.index)
        g = groups.cpu().numpy()
        known = torch.as_tensor([int(x) in self.index for x in g])
        ui = torch.as_tensor([1 + self.index.get(int(x), -1) for x in g], dtype=torch.long)
        ui = torch.where(known, ui, torch.zeros_like(ui))
        wave = wave.cpu()
        if self.last_wave is None:            # nothing filtered yet: the prior itself
            gap = torch.zeros_like(wave)
        else:                                 # unknown wave (-1): one step ahead
            gap = torch.where(wave > self.last_wave, wave - self.last_wave, torch.ones_like(wave))
        gap = gap.to(self.m.dtype).view(-1, 1, 1)
        blocks, mb = self.S.view(nb, k, nb, k), self.m.view(nb, k)
        s_bb = blocks[0, :, 0, :]
        cov_known = (s_bb + blocks[ui, :, ui, :] + blocks[0, :, ui, :].transpose(0, 1)
                     + blocks[ui, :, 0, :] + gap * (q_b + q_u))
        cov_new = s_bb + gap * q_b + sigma_u
        kn = known.view(-1, 1, 1)
        mean = mb[0] + torch.where(known.view(-1, 1), mb[ui], torch.zeros_like(mb[ui]))
        return mean, torch.where(kn, cov_known, cov_new.expand_as(cov_known))


def _log_predictive(f: _Filter, data: _Wave, target: TargetKind, sigma2: torch.Tensor,
                    q_b: torch.Tensor, q_u: torch.Tensor, sigma_u: torch.Tensor) -> float:
    """Sum of each respondent's one-step-ahead log predictive density under the filter's prior
    (Gaussian: exact marginal; binary / multiclass: the probit approximation of the logistic-
    Gaussian integral, MacKay 1992, applied per logit)."""
    mean, cov = f.prior_for(torch.as_tensor(data.g), torch.full((len(data.g),), data.wave),
                            q_b, q_u, sigma_u)
    p = data.x.shape[-1]
    o = mean.shape[-1] // p
    eta = torch.einsum("tnp,tpo->tno", data.x, mean.view(-1, p, o))
    cov5 = cov.view(-1, p, o, p, o)
    var = _eta_var(data.x, cov5)
    if target == "regression":
        tot = var + sigma2
        ll = -0.5 * (torch.log(2 * math.pi * tot) + (data.y - eta) ** 2 / tot)
        ll = ll.squeeze(-1)
    else:
        z = eta / torch.sqrt(1 + math.pi * var / 8)
        if target == "binary":
            ll = (data.y * z - torch.nn.functional.softplus(z)).squeeze(-1)
        else:
            ll = (data.y * torch.log_softmax(z, -1)).sum(-1)
    return float((data.w * ll).sum())


def _eta_var(x: torch.Tensor, cov5: torch.Tensor) -> torch.Tensor:
    """Variance of each linear predictor ``x^T beta_o``: ``[T, N, O]``."""
    return torch.einsum("tnp,tpoqo,tnq->tno", x, cov5, x)


# ----------------------------------------------------------------------------------- learner

@dataclass
class DynamicMLM(Learner):
    """Dynamic multilevel GLM: drifting population + persistent drifting group effects.

    See the module docstring for the model, the filter and the empirical Bayes. Fields:
    ``drift_scale`` multiplies the EB drift covariances (tunable); ``newton``: Newton
    iterations of each wave's filter update; ``em_iterations`` / ``tol``: the warm-up EM;
    ``eb_grid``: candidate drift factors ``q`` (relative to Sigma_u) for ``q_b`` and ``q_u``;
    ``var_floor``: smallest eigenvalue of Sigma_u (keeps it positive definite);
    ``reset_scale``: the variance ``reset_memory`` adds to the population coefficients (and,
    times Sigma_u, to every group effect): a West & Harrison intervention when a change is
    detected. Needs group ids on the revealed tasks (``Task.group_id``).
    """

    name: ClassVar[str] = "dynamic_mlm"
    role: ClassVar[Role] = "baseline"
    #: a filter: each revealed wave is one update, in order (online: the newest wave only)
    incremental: ClassVar[bool] = True
    #: ``[evaluation.pretrain]``: the simulated tasks' static EM becomes a prior (pretrain)
    pretrainable: ClassVar[bool] = True
    search_space: ClassVar[dict] = {"drift_scale": Float(0.1, 10.0, log=True),
                                    "newton": Int(1, 5), "reset_scale": Float(0.1, 10.0, log=True)}

    drift_scale: float = 1.0
    newton: int = 3
    em_iterations: int = 30
    tol: float = 1e-4
    eb_grid: tuple[float, ...] = (1e-3, 1e-2, 0.03, 0.1, 0.3)
    var_floor: float = 1e-4
    reset_scale: float = 1.0
    #: weight of the pre-trained prior in pseudo-tasks (used only after ``pretrain``)
    prior_tasks: float = 20.0

    def validate(self) -> None:
        n = self.name
        check_number(n, "prior_tasks", self.prior_tasks, strict=False)
        check_number(n, "drift_scale", self.drift_scale)
        check_int(n, "newton", self.newton, 1)
        check_int(n, "em_iterations", self.em_iterations, 1)
        check_number(n, "tol", self.tol, strict=False)
        check_number(n, "var_floor", self.var_floor)
        check_number(n, "reset_scale", self.reset_scale, strict=False)
        check(isinstance(self.eb_grid, (tuple, list)) and len(self.eb_grid) > 0 and all(
            isinstance(q, (int, float)) and q >= 0 for q in self.eb_grid), n, "eb_grid",
            self.eb_grid, "give a non-empty tuple of drift factors >= 0, e.g. (0.01, 0.1)")

    def build(self) -> None:
        spec = self.spec
        self.k = (spec.n_features + 1) * spec.out_dim
        eye = torch.eye(self.k, dtype=GLM_DTYPE, device=self.device)
        self.b0 = torch.zeros(self.k, dtype=GLM_DTYPE, device=self.device)
        self.sigma_u = eye.clone()
        self.q_b = 0.01 * eye
        self.q_u = 0.01 * eye
        self.sigma2 = torch.ones((), dtype=GLM_DTYPE, device=self.device)
        self.filter = _Filter.start(self.b0, eye)
        self._fitted = False
        self._calls = 0
        #: the pre-trained (b_0, Sigma_u, sigma2), None until ``pretrain``
        self.prior: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def pretrain(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Pre-training on simulated tasks (``evaluation.pretrain``; no group ids needed): the
        static EM on ``tasks`` alone (at most ``min(em_iterations, budget.iterations)``
        iterations, stopping once ``budget.seconds`` have passed, as ``partial_pooling``),
        whose ``(b_0, Sigma_u, sigma2)`` become the warm-up EM's start and prior (weight
        ``prior_tasks``) and, until the warm-up, the filter's start."""
        check_tasks(self, tasks)
        start = time.perf_counter()
        self.prior = None
        if not tasks:
            return {"tasks": 0.0, "seconds": 0.0}
        xr, yr, w = glm.pool(tasks, self.device)
        y = glm.encode(yr, self.spec.target, self.spec.n_classes)
        done = self._static_em(glm.design(xr), y, w.to(GLM_DTYPE),
                               min(self.em_iterations, int(budget.iterations)),
                               budget.seconds, start)
        self.prior = (self.b0.clone(), self.sigma_u.clone(), self.sigma2.clone())
        self.filter = _Filter.start(self.b0, self.sigma_u.clone())
        return {"tasks": float(len(tasks)), "em_iterations": float(done),
                "prior_tasks": float(self.prior_tasks), "seconds": time.perf_counter() - start}

    # ----------------------------------------------------------------------------- meta_fit
    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """First call: empirical Bayes on these (warm-up) waves, then filter them; later calls:
        the filter update for each revealed wave, in wave order."""
        check_tasks(self, tasks)
        start = time.perf_counter()
        self._calls += 1
        if not tasks:
            return {"tasks": 0.0, "seconds": 0.0}
        missing = [t for t in tasks if t.group_id < 0]
        if missing:
            raise DataError(f"{self.name}: task (wave {missing[0].info.get('wave')!r}) has no "
                            "group id; the dynamic model needs groups that persist across "
                            "waves. Give the survey a group column (info['group'] / "
                            "group_id), or use partial_pooling.")
        waves = _waves(tasks, self.spec.target, self.spec.n_classes, self.device,
                       fallback_wave=(-1 if self.filter.last_wave is None
                                      else self.filter.last_wave) + 1)
        log: dict[str, float] = {}
        if not self._fitted:
            log = self._empirical_bayes(tasks, waves)
            self.filter = _Filter.start(self.b0, self.b0.new_zeros(self.k, self.k)
                                        + self.sigma_u)
            self._fitted = True
        for data in waves:
            self._step(self.filter, data)
        return {"tasks": float(len(tasks)), "groups": float(len(self.filter.index)),
                "sigma2": float(self.sigma2), **log, "seconds": time.perf_counter() - start}

    def _step(self, f: _Filter, data: _Wave, q_b: torch.Tensor | None = None,
              q_u: torch.Tensor | None = None, newton: int | None = None) -> None:
        """Predict, add new groups, update. Gaussian: one Newton step is exact."""
        q_b = self.q_b if q_b is None else q_b
        q_u = self.q_u if q_u is None else q_u
        f.predict(data.wave, q_b, q_u)
        f.add_groups(data.g, self.sigma_u)
        n = 1 if self.spec.target == "regression" else (newton or self.newton)
        f.update(data, self.spec.target, self.sigma2, n)

    def _empirical_bayes(self, tasks: Sequence[Task], waves: list[_Wave]) -> dict[str, float]:
        """(b_0, Sigma_u, sigma2) by static Laplace EM; (q_b, q_u) by the warm-up predictive
        likelihood over ``eb_grid``."""
        x = torch.cat([self._pad(d.x, waves) for d in waves])
        y = torch.cat([self._pad(d.y, waves) for d in waves])
        w = torch.cat([self._pad(d.w, waves) for d in waves])
        em = self._static_em(x, y, w)
        best = (self.eb_grid[len(self.eb_grid) // 2],) * 2
        if len(waves) > 1:              # coordinate search: q_u, then q_b given it
            scores: dict[tuple[float, float], float] = {}

            def score(q: tuple[float, float]) -> float:
                if q not in scores:
                    scores[q] = self._warmup_score(waves, q[0] * self.sigma_u,
                                                   q[1] * self.sigma_u)
                return scores[q]

            qu = max(self.eb_grid, key=lambda v: (score((best[0], v)), -v))
            qb = max(self.eb_grid, key=lambda v: (score((v, qu)), -v))
            best = (qb, qu)
        self.q_b = self.drift_scale * best[0] * self.sigma_u
        self.q_u = self.drift_scale * best[1] * self.sigma_u
        return {"em_iterations": float(em), "q_b": float(best[0]), "q_u": float(best[1]),
                "sigma_u_trace": float(torch.trace(self.sigma_u))}

    @staticmethod
    def _pad(a: torch.Tensor, waves: list[_Wave]) -> torch.Tensor:
        n = max(d.x.shape[1] for d in waves)
        pad = [0, 0] * (a.dim() - 2) + [0, n - a.shape[1]]
        return torch.nn.functional.pad(a, pad)

    def _static_em(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                   cap: int | None = None, seconds: float | None = None,
                   start: float = 0.0) -> int:
        """Laplace EM of beta_t ~ N(b_0, Sigma_u) (full covariance) over (group, wave) tasks:
        at most ``cap`` (default ``em_iterations``) iterations, fewer once no estimate moves by
        more than ``tol`` or ``seconds`` (None: no limit) have passed since ``start``."""
        t = self.spec.target
        n = x.shape[0]
        done, modes = 0, None
        cap = self.em_iterations if cap is None else cap
        # E-step warm-started from last modes
        for done in range(1, cap + 1):  # noqa: B007 -- count read after the loop
            prec = _sym_inv(self.sigma_u).expand(n, self.k, self.k)
            mean = self.b0.expand(n, self.k)
            modes, h = map_path(mean, prec, x, y, w, t, self.sigma2, (3 if modes is None else 1,),
                                init=modes)
            modes, cov = modes[0], _sym_inv(h)
            share = glm.prior_share(n, self.prior_tasks, self.prior is not None)
            prior = self.prior or (None, None, None)
            b0 = glm.with_prior(modes.mean(0), prior[0], share)
            d = modes - b0
            sig = _psd_floor(glm.with_prior((d.T @ d) / n + cov.mean(0), prior[1], share,
                                            None if prior[0] is None else prior[0] - b0),
                             self.var_floor)
            change = max(float((b0 - self.b0).abs().max()), float((sig - self.sigma_u).abs().max()))
            self.b0, self.sigma_u = b0, sig
            if t == "regression":
                p = x.shape[-1]
                beta = modes.view(n, p, -1)
                resid = ((y - x @ beta) ** 2).squeeze(-1)
                lever = torch.einsum("bnp,bpq,bnq->bn", x, cov, x)
                new = glm.with_prior((w * (resid + lever)).sum() / w.sum(), prior[2], share
                                     ).clamp_min(1e-8)
                change = max(change, float((new - self.sigma2).abs()))
                self.sigma2 = new
            if change < self.tol or (seconds is not None
                                     and time.perf_counter() - start > seconds):
                break
        return done

    def _warmup_score(self, waves: list[_Wave], q_b: torch.Tensor, q_u: torch.Tensor) -> float:
        """Predictive log-likelihood of warm-up waves 2.. given the filter through the previous."""
        f = _Filter.start(self.b0, self.sigma_u)
        total = 0.0
        for i, data in enumerate(waves):
            if i:
                total += _log_predictive(f, data, self.spec.target, self.sigma2, q_b, q_u,
                                         self.sigma_u)
            self._step(f, data, q_b, q_u, newton=1)     # scoring runs: the plain EKF step
        return total

    def fix_hyperparameters(self, b0: np.ndarray, b_cov: np.ndarray, sigma_u: np.ndarray,
                            q_b: np.ndarray, q_u: np.ndarray, sigma2: float = 1.0) -> None:
        """Skip empirical Bayes: start the filter at ``b ~ N(b0, b_cov)`` with these (known)
        covariances ``[k, k]`` (for cross-checks against an exact filter, or expert priors)."""
        def as_t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=GLM_DTYPE,
                                   device=self.device).reshape(self.k, -1).squeeze(-1)

        self.b0, self.sigma_u, self.q_b, self.q_u = as_t(b0), as_t(sigma_u), as_t(q_b), as_t(q_u)
        self.sigma2 = torch.as_tensor(float(sigma2), dtype=GLM_DTYPE, device=self.device)
        self.filter = _Filter.start(self.b0, as_t(b_cov))
        self._fitted = True

    # ---------------------------------------------------------------------------- memory
    def reset_memory(self) -> None:
        """A change is likely: widen the state (intervention) so the next wave re-anchors it."""
        f = self.filter
        nb = 1 + len(f.index)
        blocks = f.S.view(nb, self.k, nb, self.k)
        eye = torch.eye(self.k, dtype=GLM_DTYPE, device=self.device)
        idx = torch.arange(nb)
        blocks[idx, :, idx, :] += self.reset_scale * torch.cat(
            [eye[None], self.sigma_u.expand(nb - 1, self.k, self.k)])

    # ----------------------------------------------------------------------------- adapt
    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        check_batch(self, support)
        steps = check_steps(steps, self.name)
        support = support.to(self.device)
        b = support.size
        groups = support.group if support.group is not None else torch.full((b,), -1)
        wave = support.wave if support.wave is not None else torch.full((b,), -1)
        mean, cov = self.filter.prior_for(groups, wave, self.q_b, self.q_u, self.sigma_u)
        x = glm.design(support.x_support)
        y = glm.encode(support.y_support, self.spec.target, self.spec.n_classes)
        w = normalise_weights(support.w_support).to(GLM_DTYPE)
        path, _ = map_path(mean, _sym_inv(cov), x, y, w, self.spec.target, self.sigma2, steps)
        coef = path.view(len(steps), b, x.shape[-1], -1)
        return GLMAdapted(steps, coef, self.spec.target, self.name)

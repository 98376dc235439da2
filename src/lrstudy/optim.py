"""Optimizers, built from a spec dict and a model's per-parameter multipliers.

``caffe_sgd`` is the update rule of all three papers' code (Caffe for CLR and super-convergence,
Lasagne's ``momentum`` for SGDR):

    v <- momentum * v + lr * (grad + weight_decay * w);   w <- w - v

PyTorch's ``SGD`` instead keeps ``lr`` outside the velocity (``v <- momentum * v + grad``;
``w <- w - lr * v``). The two agree for a constant rate but not while the rate changes every step:
after a jump in the schedule PyTorch applies the new rate to the whole accumulated velocity at once.
A reproduction of *learning-rate schedules* therefore uses the papers' rule.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CaffeSGD", "CaffeAdaptive", "TorchSGD", "build_optimizer"]


def _loss_of(closure) -> torch.Tensor | None:
    """The loss a step's ``closure`` recomputes (with gradients on), as torch optimizers do; None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class CaffeSGD(torch.optim.Optimizer):
    """SGD with momentum in Caffe's form (learning rate inside the velocity).

    Each parameter group holds ``lr`` (the rate actually applied to it) and ``weight_decay``;
    :func:`lrstudy.scheduler.set_lr_and_momentum` fills ``lr`` from the schedule times the group's ``lr_mult``.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"CaffeSGD: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; "
                             f"got lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocities.append(state["velocity"])
            torch._foreach_mul_(velocities, group["momentum"])
            torch._foreach_add_(velocities, grads, alpha=group["lr"])
            torch._foreach_sub_(params, velocities)
        return loss


class CaffeAdaptive(torch.optim.Optimizer):
    """Caffe's other solvers, as ``solver_type`` selects them (CLR Table 3 "invoked the respective
    option in Caffe"). Weight decay is added to the gradient first, as Caffe's ``Regularize`` does;
    ``lr`` multiplies every update. With ``g`` the regularised gradient:

    * ``nesterov``: ``v' = m v + lr g``; ``w -= (1 + m) v' - m v``
    * ``adagrad``:  ``h += g^2``; ``w -= lr g / (sqrt(h) + delta)``
    * ``rmsprop``:  ``h = d h + (1 - d) g^2``; ``w -= lr g / (sqrt(h) + delta)`` (``rms_decay`` d)
    * ``adadelta``: ``h = m h + (1 - m) g^2``; ``u = g sqrt(s + delta) / sqrt(h + delta)``;
      ``s = m s + (1 - m) u^2``; ``w -= lr u`` (Caffe calls the decay ``momentum``)
    * ``adam``:     ``a = m a + (1 - m) g``; ``b = m2 b + (1 - m2) g^2``;
      ``w -= lr sqrt(1 - m2^t) / (1 - m^t) a / (sqrt(b) + delta)`` (``momentum`` m = beta1)

    Caffe refuses momentum with AdaGrad and RMSProp; so does this class.
    """

    RULES = ("nesterov", "adagrad", "rmsprop", "adadelta", "adam")

    def __init__(self, params, rule: str, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 delta: float = 1e-8, rms_decay: float = 0.99, momentum2: float = 0.999):
        if rule not in self.RULES:
            raise ValueError(f"unknown Caffe solver rule {rule!r}; known: {list(self.RULES)}")
        if rule in ("adagrad", "rmsprop") and momentum:
            raise ValueError(f"Caffe's {rule} takes no momentum; got momentum={momentum}")
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or delta <= 0:
            raise ValueError(f"{rule}: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0, delta > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, delta=delta,
                                      rms_decay=rms_decay, momentum2=momentum2))
        self.rule = rule

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr, m, delta = group["lr"], group["momentum"], group["delta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["h"] = torch.zeros_like(p)
                    if self.rule in ("adadelta", "adam"):
                        state["s"] = torch.zeros_like(p)
                state["step"] += 1
                h = state["h"]
                if self.rule == "nesterov":
                    previous = h.clone()
                    h.mul_(m).add_(g, alpha=lr)
                    p.sub_(h * (1 + m) - previous * m)
                elif self.rule == "adagrad":
                    h.addcmul_(g, g)
                    p.sub_(lr * g / (h.sqrt() + delta))
                elif self.rule == "rmsprop":
                    d = group["rms_decay"]
                    h.mul_(d).addcmul_(g, g, value=1 - d)
                    p.sub_(lr * g / (h.sqrt() + delta))
                elif self.rule == "adadelta":
                    s = state["s"]
                    h.mul_(m).addcmul_(g, g, value=1 - m)
                    update = g * (s + delta).sqrt() / (h + delta).sqrt()
                    s.mul_(m).addcmul_(update, update, value=1 - m)
                    p.sub_(lr * update)
                else:  # adam
                    s, m2, t = state["s"], group["momentum2"], state["step"]
                    h.mul_(m).add_(g, alpha=1 - m)
                    s.mul_(m2).addcmul_(g, g, value=1 - m2)
                    correction = (1 - m2**t) ** 0.5 / (1 - m**t)
                    p.sub_(lr * correction * h / (s.sqrt() + delta))
        return loss


class TorchSGD(torch.optim.SGD):
    """SGD as Torch7's ``optim.sgd`` and PyTorch compute it (the rate outside the velocity:
    ``v <- m v + g``, ``w <- w - lr v``, or ``w <- w - lr (g + m v)`` with Nesterov), for the
    networks whose original code used it (fb.resnet.torch, Stochastic Depth, DenseNet).
    Parameter groups carry ``weight_decay`` (already times the group's ``decay_mult``)."""

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def _caffe(rule: str):
    return lambda params, **kw: CaffeAdaptive(params, rule, **kw)


OPTIMIZERS = {
    "caffe_sgd": CaffeSGD,
    "torch_sgd": TorchSGD,
    **{f"caffe_{rule}": _caffe(rule) for rule in CaffeAdaptive.RULES},
}


def build_optimizer(spec: dict, model: nn.Module) -> torch.optim.Optimizer:
    """One parameter group per distinct (lr_mult, decay_mult) pair of the model.

    ``spec`` is e.g. ``{"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004}``; the group's
    decay is ``weight_decay * decay_mult`` and its ``lr_mult`` is kept for the rate's setter
    (:func:`lrstudy.scheduler.set_lr_and_momentum`).
    """
    spec = dict(spec)
    name = spec.pop("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {sorted(OPTIMIZERS)}")
    weight_decay = spec.pop("weight_decay", 0.0)
    groups: dict[tuple[float, float], list] = {}
    for pname, param in model.named_parameters():
        groups.setdefault(model.param_multipliers[pname], []).append(param)
    param_groups = [
        {"params": params, "lr_mult": lr_mult, "weight_decay": weight_decay * decay_mult}
        for (lr_mult, decay_mult), params in groups.items()
    ]
    return OPTIMIZERS[name](param_groups, **spec)

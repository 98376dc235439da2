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


# Hyperparameters that change every step (rate, momentum) arrive as Python floats or as 0-dim tensors
# on the parameters' device (lrstudy.rates). With floats every update below is the same kernel, in
# the same order, as a per-parameter loop -- the CPU's results keep their rounding bit for bit; with
# tensors nothing is read back to the host, so the step can run ahead of the GPU or be captured.


def _scaled(tensors: list[torch.Tensor], factor) -> list[torch.Tensor]:
    return torch._foreach_mul(tensors, factor)


def _add_scaled_(targets: list[torch.Tensor], tensors: list[torch.Tensor], factor) -> None:
    """``targets += factor * tensors``."""
    if isinstance(factor, torch.Tensor):
        torch._foreach_add_(targets, torch._foreach_mul(tensors, factor))
    else:
        torch._foreach_add_(targets, tensors, alpha=factor)


def _add_product_(targets: list[torch.Tensor], a: list[torch.Tensor], b: list[torch.Tensor], factor) -> None:
    """``targets += factor * a * b``."""
    if isinstance(factor, torch.Tensor):
        torch._foreach_add_(targets, torch._foreach_mul(torch._foreach_mul(a, b), factor))
    else:
        torch._foreach_addcmul_(targets, a, b, value=factor)


def _nonzero(value) -> bool:
    """Whether a hyperparameter is switched on (a tensor is: reading it would wait for the device)."""
    return isinstance(value, torch.Tensor) or value != 0


class _Foreach(torch.optim.Optimizer):
    """What the study's optimizers share: each group's parameters that have gradients, their
    gradients with the group's weight decay added (as Caffe's ``Regularize`` and Torch's ``optim.sgd``
    do), and per-parameter state buffers created on first use. A rule is its ``_update``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            params, grads = self._with_grads(group)
            if params:
                self._update(group, params, grads)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _with_grads(self, group: dict) -> tuple[list, list]:
        params = [p for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if params and group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        return params, grads

    def _buffers(self, params: list, name: str, initial=torch.zeros_like) -> list[torch.Tensor]:
        out = []
        for p in params:
            state = self.state[p]
            if name not in state:
                state[name] = initial(p)
            out.append(state[name])
        return out


class CaffeSGD(_Foreach):
    """SGD with momentum in Caffe's form (learning rate inside the velocity).

    Each parameter group holds ``lr`` (the rate actually applied to it) and ``weight_decay``;
    :func:`lrstudy.scheduler.set_lr_and_momentum` fills ``lr`` from the schedule times the group's ``lr_mult``.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"CaffeSGD: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; "
                             f"got lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _update(self, group, params, grads) -> None:
        velocities = self._buffers(params, "velocity")
        torch._foreach_mul_(velocities, group["momentum"])
        _add_scaled_(velocities, grads, group["lr"])
        torch._foreach_sub_(params, velocities)


class CaffeAdaptive(_Foreach):
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

    def _update(self, group, params, grads) -> None:
        getattr(self, f"_{self.rule}")(group, params, grads, self._buffers(params, "h"))

    def _nesterov(self, group, params, grads, h) -> None:
        lr, m = group["lr"], group["momentum"]
        previous = _scaled(h, m)  # m v, before v moves on
        torch._foreach_mul_(h, m)
        _add_scaled_(h, grads, lr)
        update = _scaled(h, 1 + m)
        torch._foreach_sub_(update, previous)
        torch._foreach_sub_(params, update)

    def _adagrad(self, group, params, grads, h) -> None:
        torch._foreach_addcmul_(h, grads, grads)
        self._scaled_step(params, _scaled(grads, group["lr"]), h, group["delta"])

    def _rmsprop(self, group, params, grads, h) -> None:
        d = group["rms_decay"]
        torch._foreach_mul_(h, d)
        torch._foreach_addcmul_(h, grads, grads, value=1 - d)
        self._scaled_step(params, _scaled(grads, group["lr"]), h, group["delta"])

    def _adadelta(self, group, params, grads, h) -> None:
        m, delta, s = group["momentum"], group["delta"], self._buffers(params, "s")
        torch._foreach_mul_(h, m)
        _add_product_(h, grads, grads, 1 - m)
        root_s = torch._foreach_add(s, delta)
        torch._foreach_sqrt_(root_s)
        update = torch._foreach_mul(grads, root_s)
        root_h = torch._foreach_add(h, delta)
        torch._foreach_sqrt_(root_h)
        torch._foreach_div_(update, root_h)
        torch._foreach_mul_(s, m)
        _add_product_(s, update, update, 1 - m)
        torch._foreach_sub_(params, _scaled(update, group["lr"]))

    def _adam(self, group, params, grads, h) -> None:
        lr, m, m2, s = group["lr"], group["momentum"], group["momentum2"], self._buffers(params, "s")
        counted = isinstance(lr, torch.Tensor) or isinstance(m, torch.Tensor)
        steps = self._step_counts(params, on_device=counted)
        torch._foreach_mul_(h, m)
        _add_scaled_(h, grads, 1 - m)
        torch._foreach_mul_(s, m2)
        torch._foreach_addcmul_(s, grads, grads, value=1 - m2)
        if counted:  # one count for the group: its parameters step together
            t = steps[0]
            update = _scaled(h, lr * ((1 - m2**t) ** 0.5 / (1 - m**t)))
        else:
            update = torch._foreach_mul(h, [lr * ((1 - m2**t) ** 0.5 / (1 - m**t)) for t in steps])
        self._scaled_step(params, update, s, group["delta"])

    def _step_counts(self, params, on_device: bool) -> list:
        """Each parameter's update count, this update included: Python ints, or device tensors
        where the rate arrives as a tensor (a count read on the host would wait for the device)."""
        counts = []
        for p in params:
            state = self.state[p]
            t = state.get("step", 0)
            if on_device and not isinstance(t, torch.Tensor):
                # a fill, not a copy from the host; float64 so that the bias corrections
                # 1 - m**t are as exact as with Python numbers (in float32 1 - 0.999**1 is off by
                # 1e-5, which Adam's early, nearly sign-like updates amplify)
                t = torch.full((), float(t), dtype=torch.float64, device=p.device)
            state["step"] = t + 1 if not isinstance(t, torch.Tensor) else t.add_(1)
            counts.append(state["step"])
        return counts

    @staticmethod
    def _scaled_step(params, update, second_moment, delta) -> None:
        """``w -= update / (sqrt(second_moment) + delta)``."""
        denominator = torch._foreach_sqrt(second_moment)
        torch._foreach_add_(denominator, delta)
        torch._foreach_div_(update, denominator)
        torch._foreach_sub_(params, update)


class TorchSGD(_Foreach):
    """SGD as Torch7's ``optim.sgd`` and PyTorch compute it (the rate outside the velocity:
    ``v <- m v + g``, ``w <- w - lr v``, or ``w <- w - lr (g + m v)`` with Nesterov), for the
    networks whose original code used it (fb.resnet.torch, Stochastic Depth, DenseNet).
    Parameter groups carry ``weight_decay`` (already times the group's ``decay_mult``).

    The same arithmetic as ``torch.optim.SGD`` (no dampening; the velocity starts as the first
    gradient), in the same order, so that on the CPU the results are bit for bit torch's; but over
    all of a group's parameters at once, and with a rate or momentum that may be a device tensor."""

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or (nesterov and not momentum):
            raise ValueError(f"TorchSGD: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0 and momentum for "
                             f"Nesterov; got lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def _update(self, group, params, grads) -> None:
        m = group["momentum"]
        if _nonzero(m):
            grads = self._momentum(params, grads, m, group["nesterov"])
        _add_scaled_(params, grads, -group["lr"])

    def _momentum(self, params, grads, m, nesterov: bool) -> list[torch.Tensor]:
        """Move each velocity on (a parameter's first velocity is its gradient, as in torch) and
        return what the rate multiplies: the velocities, or with Nesterov ``g + m v``."""
        started = [(self.state[p]["momentum_buffer"], g) for p, g in zip(params, grads) if "momentum_buffer" in self.state[p]]
        if started:
            velocities, their_grads = [v for v, _ in started], [g for _, g in started]
            torch._foreach_mul_(velocities, m)
            torch._foreach_add_(velocities, their_grads)
        for p, g in zip(params, grads):
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = g.clone()
        velocities = [self.state[p]["momentum_buffer"] for p in params]
        if not nesterov:
            return velocities
        if isinstance(m, torch.Tensor):
            return torch._foreach_add(grads, torch._foreach_mul(velocities, m))
        return torch._foreach_add(grads, velocities, alpha=m)


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

"""Adaptive weight ``gamma`` of the sensitivity term in ``E_tot = E + gamma * S`` (paper 3.1.3).

The rule, applied once per epoch by :meth:`AdaptiveGamma.update` with this epoch's error ``e_t`` and
the errors ``e_1 .. e_{t-1}`` of the earlier updates:

* reference ``r_t = sum_{i=1}^{t-1} 0.5**i * e_{t-i}`` (the most recent earlier epoch weighted 0.5,
  the one before 0.25, ...; the weights are not renormalised, so they sum to ``1 - 0.5**(t-1)``);
* gamma goes up by ``step`` if ``t > 1`` and ``e_t < r_t``, or if an ``accuracy_bound`` is set and
  this epoch's ``accuracy > accuracy_bound``;
* otherwise it goes down by ``step``, except at the first update (``t = 1``: no earlier epoch to
  compare with), which leaves gamma unchanged unless the accuracy condition raised it;
* the result is clamped to ``[minimum, maximum]``.

Every comparison is strict. The error is whatever the caller measures per epoch (the trainer uses
the task loss ``E`` without the ``gamma * S`` term).
"""

from __future__ import annotations

import math

from axtrain.errors import ConfigError


class AdaptiveGamma:
    """Per-epoch schedule of ``gamma``; ``.value`` is the gamma to use for the next epoch."""

    def __init__(
        self,
        initial: float,
        step: float,
        minimum: float = 0.0,
        maximum: float = math.inf,
        accuracy_bound: float | None = None,
    ) -> None:
        for name, v in (("initial", initial), ("step", step), ("minimum", minimum)):
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"gamma {name} must be a finite number >= 0, got {v}")
        if math.isnan(maximum) or not minimum <= initial <= maximum:
            raise ConfigError(f"gamma needs minimum <= initial <= maximum, got {minimum} <= {initial} <= {maximum}")
        if accuracy_bound is not None and not 0.0 <= accuracy_bound <= 1.0:
            raise ConfigError(f"gamma accuracy_bound must lie in [0, 1], got {accuracy_bound}")
        self.step = float(step)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.accuracy_bound = accuracy_bound
        self.value = float(initial)
        self.errors: list[float] = []

    def reference(self) -> float | None:
        """``sum_i 0.5**i * e_{t-i}`` over the errors seen so far (None before the first update)."""
        if not self.errors:
            return None
        return sum(0.5 ** i * e for i, e in enumerate(reversed(self.errors), start=1))

    def update(self, epoch_error: float, accuracy: float | None = None) -> float:
        """Record this epoch's error (and accuracy), move gamma by the rule, return the new value."""
        if not math.isfinite(epoch_error):
            raise ConfigError(f"gamma update: epoch error is {epoch_error} (training diverged?)")
        reference = self.reference()
        improved = reference is not None and epoch_error < reference
        accurate = self.accuracy_bound is not None and accuracy is not None and accuracy > self.accuracy_bound
        if improved or accurate:
            self.value += self.step
        elif reference is not None:
            self.value -= self.step
        self.value = min(self.maximum, max(self.minimum, self.value))
        self.errors.append(float(epoch_error))
        return self.value

    def state_dict(self) -> dict:
        """Everything needed to resume the schedule (JSON-serialisable)."""
        return {
            "value": self.value, "step": self.step, "minimum": self.minimum,
            "maximum": None if math.isinf(self.maximum) else self.maximum,  # strict JSON has no inf
            "accuracy_bound": self.accuracy_bound, "errors": list(self.errors),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "AdaptiveGamma":
        """Rebuild a schedule saved by :meth:`state_dict`."""
        try:
            maximum = math.inf if state["maximum"] is None else state["maximum"]
            gamma = cls(state["value"], state["step"], state["minimum"], maximum, state["accuracy_bound"])
            gamma.errors = [float(e) for e in state["errors"]]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"gamma state is incomplete or malformed: {exc!r}") from exc
        return gamma

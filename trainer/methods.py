"""The training methods, each a function of a session (:class:`Session`, implemented by
:class:`axtrain.trainer.engine.Session`; the engine imports this module, never the other way round).

``METHODS`` maps the ``--method`` name to the function. A method calls ``session.run_phase`` for its
phases (checkpointed and resumable) and may set ``session.final_layers`` / ``session.extra_summary``;
otherwise the final layers are the model calibrated for the target multiplier and voltage.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from torch import nn

from axtrain.errors import ConfigError
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.trainer.approxann import ApproxAnnConfig, run_approxann
from axtrain.trainer.config import Method, TrainConfig
from axtrain.trainer.hardware import with_target


class Session(Protocol):
    """What a training method uses of a session in progress."""

    config: TrainConfig
    model: nn.Sequential
    data: Any  # trainer.engine.Tensors: x_train, y_train, x_test, y_test on the training device
    final_layers: list[QuantizedLayer] | None
    extra_summary: dict[str, Any]

    def run_phase(self, kind: str, epochs: int, lr: float, until_converged: bool = False) -> None:
        """Train one checkpointed, resumable phase (``bp``, ``act`` or ``pas``)."""

    def target_layers(self, nominal: bool = False, exact: bool = False) -> list[QuantizedLayer]:
        """The model calibrated for the target multiplier and voltage."""


def bp(session: Session) -> None:
    """Conventional back-propagation (float, Adam, the output layer's task loss); quantised after training."""
    c = session.config
    session.run_phase("bp", *c.schedule.phase("first"))


def act(session: Session) -> None:
    """AxTrain-act: minimise ``E + gamma * S`` with gamma adapted every epoch (paper 3.1)."""
    c = session.config
    session.run_phase("act", *c.schedule.phase("first"))


def pas(session: Session) -> None:
    """AxTrain-pas alone: a BP warm-up of ``epochs`` epochs (pas needs a trained network to start
    from), then ``pas_epochs`` epochs through the emulated target hardware."""
    c = session.config
    session.run_phase("bp", *c.schedule.phase("first"))
    session.run_phase("pas", *c.schedule.phase("pas"))


def axtrain(session: Session) -> None:
    """AxTrain: act until E and S converge (at most ``epochs``), then pas at the target hardware."""
    c = session.config
    session.run_phase("act", *c.schedule.phase("first"), until_converged=True)
    session.run_phase("pas", *c.schedule.phase("pas"))


def approxann(session: Session) -> None:
    """ApproxAnn (Zhang et al., DATE 2015) from a BP or act network (``approxann_start``): switch the
    least critical neurons to the target multiplier while accuracy stays within the budget."""
    c = session.config
    if c.hardware.multiplier.is_exact:
        raise ConfigError("approxann: set an approximate target multiplier, e.g. --multiplier K1")
    session.run_phase(c.approxann_start, *c.schedule.phase("first"))
    layers = session.target_layers(exact=True)
    data = (session.data.x_train.cpu().numpy(), session.data.y_train.cpu().numpy())
    result = run_approxann(session.model, layers, data, mode=c.hardware.multiplier, seed=c.seed, config=ApproxAnnConfig(output_layer=c.outputs))
    session.model.load_state_dict(result.model.state_dict())
    session.final_layers = with_target(result.layers, None, c.hardware.sram_voltage)
    session.extra_summary["approxann"] = result.summary()


METHODS: dict[Method, Callable[[Session], None]] = {
    Method.BP: bp,
    Method.ACT: act,
    Method.PAS: pas,
    Method.AXTRAIN: axtrain,
    Method.APPROXANN: approxann,
}
assert set(METHODS) == set(Method), "every Method has its function"

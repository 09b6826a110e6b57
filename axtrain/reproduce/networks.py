"""The cells the figures share: networks, bundles, evaluations, simulations, ApproxAnn searches.

Building the same cell twice gives the same key, so figures that need the BP network of
``(app, seed)`` all point at one training cell and it is trained once.

* ``bp(app, seed)`` / ``act(app, seed)``: trained from scratch (the trainer's bp / act methods).
* ``axtrain(app, seed, multiplier=K)`` / ``axtrain(app, seed, sram_voltage=V)``: the act network
  followed by ``pas_epochs`` of pas at that target (trainer method ``pas`` with no BP warm-up, started
  from the act cell's weights). That is AxTrain (act, then pas) with the act phase shared by every
  target, one network per K or V as Fig. 6 and Fig. 7 need.
* ``pas_from_bp(app, seed, multiplier=K)`` / ``pas_from_bp(app, seed, sram_voltage=V)``: the BP
  network followed by ``pas_epochs`` of pas at that target, i.e. AxTrain-pas alone (Fig. 4's "pas"
  map; Fig. 7's AxTrain-pas bars).
"""

from __future__ import annotations

from typing import Any

from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.reproduce.cells import Cell
from axtrain.reproduce.profile import BUDGET, Profile
from axtrain.trainer.config import make_config


def _train(profile: Profile, app: str, seed: int, method: str, label: str, start: Cell | None = None, **changes: Any) -> Cell:
    values = {"app": app, "method": method, "seed": seed, **profile.train_overrides(app), **changes}
    if "multiplier" in values:
        values["multiplier"] = profile.drum(values["multiplier"])
    config = make_config(values, "reproduce").resolved()
    params = {"config": config.model_dump(mode="json"), "data": profile.data(app)}
    return Cell("train", params, (start,) if start is not None else (), label)


def _target(multiplier: str, sram_voltage: float) -> str:
    """A pas target in labels: the multiplier at nominal voltage, else the voltage."""
    return multiplier if sram_voltage >= NOMINAL_VOLTAGE else f"{sram_voltage:g}V"


def bp(profile: Profile, app: str, seed: int) -> Cell:
    return _train(profile, app, seed, "bp", f"train bp {app} s{seed}")


def act(profile: Profile, app: str, seed: int) -> Cell:
    return _train(profile, app, seed, "act", f"train act {app} s{seed}")


def axtrain(profile: Profile, app: str, seed: int, multiplier: str = "exact", sram_voltage: float = NOMINAL_VOLTAGE) -> Cell:
    """AxTrain for one target: pas at (multiplier, voltage) from the act network."""
    return _train(
        profile, app, seed, "pas", f"train axtrain@{_target(multiplier, sram_voltage)} {app} s{seed}", start=act(profile, app, seed),
        epochs=0, multiplier=multiplier, sram_voltage=sram_voltage,
    )


def pas_from_bp(profile: Profile, app: str, seed: int, multiplier: str = "exact", sram_voltage: float = NOMINAL_VOLTAGE) -> Cell:
    """AxTrain-pas alone for one target: pas at (multiplier, voltage) from the BP network."""
    return _train(
        profile, app, seed, "pas", f"train bp+pas@{_target(multiplier, sram_voltage)} {app} s{seed}", start=bp(profile, app, seed),
        epochs=0, multiplier=multiplier, sram_voltage=sram_voltage,
    )


def evaluate(profile: Profile, network: Cell, app: str, seed: int, modes: tuple[str, ...]) -> Cell:
    """Accuracy and output error of a network on the test split under each multiplier mode
    (trainer emulation, bit-exact with the runtime; nominal voltage)."""
    params: dict[str, Any] = {"app": app, "seed": seed, "modes": list(modes), "data": profile.data(app)}
    mapped = {m: profile.drum(m) for m in modes if profile.drum(m) != m}
    if mapped:
        params["multipliers"] = mapped  # results stay keyed by the mode names
    return Cell("evaluate", params, (network,), f"evaluate {network.label.removeprefix('train ')}")


def approxann(profile: Profile, app: str, seed: int, start: str, mode: str) -> Cell:
    """ApproxAnn at ``mode`` from the ``start`` (bp or act) network of (app, seed)."""
    s = profile.app(app)
    network = bp(profile, app, seed) if start == "bp" else act(profile, app, seed)
    params = {
        "app": app, "seed": seed, "mode": profile.drum(mode), "budget": BUDGET,
        "retrain_epochs": s.approxann_retrain_epochs, "max_rounds": s.approxann_max_rounds, "data": profile.data(app),
    }
    return Cell("approxann", params, (network,), f"approxann {mode} from {start} {app} s{seed}")


def bundle(source: Cell) -> Cell:
    """Export (if a training run) and compile ``source`` into a bundle."""
    return Cell("bundle", {}, (source,), f"bundle {source.label.removeprefix('train ')}")


def simulate(profile: Profile, source: Cell, app: str, seed: int, multiplier: str | None = None, sram_voltage: float | None = None) -> Cell:
    """Runtime simulation of ``source``'s bundle on the test split: accuracy over ``runs`` NTV runs
    (1 when nothing can flip; ``profile.runs`` below nominal voltage), energy and power of one inference. ``None`` keeps the bundle's own
    annotation (ApproxAnn's per-neuron modes)."""
    faulty = sram_voltage is not None and sram_voltage < NOMINAL_VOLTAGE
    params = {
        "app": app, "seed": seed, "multiplier": None if multiplier is None else profile.drum(multiplier), "sram_voltage": sram_voltage,
        "runs": profile.runs if faulty else 1, "data": profile.data(app),
    }
    where = f"{multiplier or 'own'}@{sram_voltage if sram_voltage is not None else 'own'}"
    return Cell("simulate", params, (bundle(source),), f"simulate {source.label.split(' ', 1)[1]} {where}")


def sensitivity(profile: Profile, app: str, seed: int, networks: dict[str, Cell]) -> Cell:
    """Last-layer sensitivity maps (Fig. 4) of the named networks: the raw ``|w| |dO/dw|`` of each."""
    # "scale" is in the key: cells from before the maps were stored raw (each divided by its own
    # maximum) must not be reused for the shared colour scale.
    params = {"app": app, "seed": seed, "names": list(networks), "data": profile.data(app), "scale": "absolute"}
    return Cell("sensitivity", params, tuple(networks.values()), f"sensitivity {app} s{seed}")

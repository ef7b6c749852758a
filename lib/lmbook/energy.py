"""What a training run costs in electricity and carbon: accelerator-hours -> kWh -> tonnes of CO2e.

Introduced in chapter 11, Outlook (the cost of training). The calculation is a chain of multiplications, and
every link is an assumption that this module makes a named argument, so that none of them hides:

1. **Accelerator-hours.** Training FLOPs (``6 N D``, :func:`lmbook.cost.training_flops`) divided by what one
   accelerator really delivers, its data-sheet peak (:mod:`lmbook.hardware`) times the **utilisation** the run
   achieves: :func:`accelerator_hours`. A measured run skips this step: its hours are the wall-clock time times
   the number of devices.
2. **Energy at the plug** (:func:`training_energy_kwh`). Hours times the average **power** each accelerator
   draws (watts; the board's rated power is an upper bound, and a published figure may include its share of the
   host, fans and network), times the data centre's **PUE** (power usage effectiveness: total facility energy
   over the computers' energy, 1.0 for a perfect data centre; the rest is cooling, power conversion, lighting).
3. **Emissions** (:func:`emissions_tonnes`). Energy times the **carbon intensity** of the electricity: kg of CO2
   equivalent (CO2e, other greenhouse gases counted by their warming effect) emitted per kWh generated, which
   depends on the grid (coal, gas, hydro, solar...) and on the hour.

:class:`EnergyEstimate` holds all the inputs and derives every output; :func:`estimate_training` builds one from
FLOPs, :func:`estimate_measured` from a measured run time. Manufacturing the hardware and running the trained
model (inference) are not included.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from lmbook.hardware import PEAK_TFLOPS

SECONDS_PER_HOUR = 3600.0
KG_PER_LB = 0.45359237
"""One pound in kilograms (exact, by definition of the international pound)."""

BOARD_POWER_W: dict[str, float] = {"V100": 300.0, "A100": 400.0, "H100": 700.0}
"""Maximum board power (thermal design power) in watts of the SXM versions, from NVIDIA's data sheets: the most a
card is designed to draw, an upper bound on its average power during training."""

PATTERSON_GPT3: dict[str, float] = {
    "flops": 3.14e23,
    "n_devices": 10_000,
    "days": 14.8,
    "measured_tflops_per_device": 24.6,
    "power_watts": 330.0,
    "pue": 1.10,
    "carbon_intensity": 0.429,
    "energy_mwh": 1287.0,
    "emissions_tonnes": 552.0,
}
"""GPT-3's training as Patterson et al. 2021 (*Carbon Emissions and Large Neural Network Training*,
arXiv:2104.10350) state it in their Table 4: 3.14e23 FLOPs on 10,000 NVIDIA V100 GPUs for 14.8 days at a measured
24.6 TFLOP/s per GPU, 330 W average power per GPU, a PUE of 1.10 and 0.429 kg CO2e per kWh; their results are
1,287 MWh and 552 t CO2e. The first seven entries are inputs, the last two the paper's outputs to compare with."""

STRUBELL_PUE = 1.58
"""The PUE Strubell, Ganesh and McCallum 2019 (*Energy and Policy Considerations for Deep Learning in NLP*,
arXiv:1906.02243) use for a typical data centre (the 2018 global average they cite)."""

STRUBELL_LBS_PER_KWH = 0.954
"""Pounds of CO2e per kWh, the US average that Strubell et al. 2019 multiply their energy by (their equation 2)."""


def _check_positive(value, name: str, allow_zero: bool = False) -> float:
    """``value`` as a float; ValueError unless it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        kind = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def _check_utilisation(utilisation) -> float:
    if isinstance(utilisation, bool) or not isinstance(utilisation, numbers.Real) or not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be a fraction in (0, 1] (e.g. 0.4 for 40%), got {utilisation!r}")
    return float(utilisation)


def _check_pue(pue) -> float:
    value = _check_positive(pue, "pue")
    if value < 1:
        raise ValueError(f"pue (facility energy / computer energy) cannot be below 1, got {pue!r}")
    return value


def datasheet_peak_flops(accelerator: str, precision: str = "bf16") -> float:
    """The dense data-sheet peak of ``accelerator`` (a key of :data:`lmbook.hardware.PEAK_TFLOPS`) in FLOP/s.

    Args:
        accelerator: e.g. ``"V100"``, ``"A100"``, ``"H100"``. precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """
    if accelerator not in PEAK_TFLOPS:
        raise ValueError(f"unknown accelerator {accelerator!r}; choose one of {', '.join(map(repr, PEAK_TFLOPS))}")
    peaks = PEAK_TFLOPS[accelerator]
    if precision not in peaks:
        raise ValueError(f"no {precision!r} peak for the {accelerator}; it has {', '.join(map(repr, peaks))}")
    return peaks[precision] * 1e12


def accelerator_hours(flops: float, peak_flops: float, utilisation: float) -> float:
    """Hours of one accelerator that ``flops`` take: ``flops / (peak_flops * utilisation) / 3600``.

    Spread over ``P`` accelerators the wall-clock time is this divided by ``P``; the energy is the same.

    Args:
        flops: training compute (e.g. ``6 N D``). peak_flops: the accelerator's data-sheet peak, FLOP/s, for the
            precision used. utilisation: the fraction of the peak the run achieves, in ``(0, 1]`` (model FLOPs
            utilisation; 0.3-0.5 is typical of large transformer training).
    """
    flops = _check_positive(flops, "flops")
    peak = _check_positive(peak_flops, "peak_flops")
    return flops / (peak * _check_utilisation(utilisation)) / SECONDS_PER_HOUR


def training_energy_kwh(accelerator_hours: float, power_watts: float, pue: float = 1.0) -> float:
    """Energy drawn from the grid in kWh: ``accelerator_hours * power_watts / 1000 * pue``.

    Args:
        accelerator_hours: device-hours (hours x devices). power_watts: average power per device, W (for a CPU run,
            the whole machine's). pue: the data centre's power usage effectiveness, >= 1 (1: count the computers
            only).
    """
    hours = _check_positive(accelerator_hours, "accelerator_hours", allow_zero=True)
    return hours * _check_positive(power_watts, "power_watts") / 1000.0 * _check_pue(pue)


def emissions_tonnes(energy_kwh: float, carbon_intensity: float) -> float:
    """Tonnes of CO2e: ``energy_kwh * carbon_intensity / 1000``.

    Args:
        energy_kwh: energy from the grid. carbon_intensity: kg CO2e per kWh of the electricity used, >= 0.
    """
    energy = _check_positive(energy_kwh, "energy_kwh", allow_zero=True)
    return energy * _check_positive(carbon_intensity, "carbon_intensity", allow_zero=True) / 1000.0


@dataclass(frozen=True)
class EnergyEstimate:
    """Every input of an energy estimate and every output derived from it.

    Attributes:
        accelerator_hours: device-hours of the run. power_watts: average power per device, W. pue: power usage
            effectiveness of the data centre (>= 1). carbon_intensity: kg CO2e per kWh. n_devices: devices
            working at once (only the wall-clock time depends on it).
    """

    accelerator_hours: float
    power_watts: float
    pue: float = 1.0
    carbon_intensity: float = 0.0
    n_devices: int = 1

    def __post_init__(self) -> None:
        _check_positive(self.accelerator_hours, "accelerator_hours", allow_zero=True)
        _check_positive(self.power_watts, "power_watts")
        _check_pue(self.pue)
        _check_positive(self.carbon_intensity, "carbon_intensity", allow_zero=True)
        if isinstance(self.n_devices, bool) or not isinstance(self.n_devices, numbers.Integral) or self.n_devices < 1:
            raise ValueError(f"n_devices must be a positive integer, got {self.n_devices!r}")

    @property
    def days(self) -> float:
        """Wall-clock days on ``n_devices`` devices."""
        return self.accelerator_hours / self.n_devices / 24.0

    @property
    def it_energy_kwh(self) -> float:
        """Energy of the computers alone (PUE 1), kWh."""
        return training_energy_kwh(self.accelerator_hours, self.power_watts, 1.0)

    @property
    def energy_kwh(self) -> float:
        """Energy from the grid, cooling and power conversion included, kWh."""
        return training_energy_kwh(self.accelerator_hours, self.power_watts, self.pue)

    @property
    def energy_mwh(self) -> float:
        """:attr:`energy_kwh` in MWh."""
        return self.energy_kwh / 1000.0

    @property
    def emissions_tonnes(self) -> float:
        """Tonnes of CO2e."""
        return emissions_tonnes(self.energy_kwh, self.carbon_intensity)

    @property
    def emissions_kg(self) -> float:
        """Kilograms of CO2e."""
        return 1000.0 * self.emissions_tonnes


def estimate_training(
    flops: float,
    peak_flops: float,
    utilisation: float,
    power_watts: float,
    pue: float = 1.0,
    carbon_intensity: float = 0.0,
    n_devices: int = 1,
) -> EnergyEstimate:
    """An :class:`EnergyEstimate` for ``flops`` of training (a run that has not been timed).

    Args:
        flops: training compute, e.g. :func:`lmbook.cost.training_flops` (``6 N D``).
        peak_flops, utilisation: as for :func:`accelerator_hours`.
        power_watts, pue, carbon_intensity, n_devices: as for :class:`EnergyEstimate`.
    """
    hours = accelerator_hours(flops, peak_flops, utilisation)
    return EnergyEstimate(hours, power_watts, pue, carbon_intensity, n_devices)


def estimate_measured(
    seconds: float, power_watts: float, pue: float = 1.0, carbon_intensity: float = 0.0, n_devices: int = 1
) -> EnergyEstimate:
    """An :class:`EnergyEstimate` for a run that took ``seconds`` of wall-clock time on ``n_devices`` devices.

    Args:
        seconds: measured run time. power_watts: average power per device (for a CPU run, an assumed power of the
            machine). pue, carbon_intensity, n_devices: as for :class:`EnergyEstimate`.
    """
    seconds = _check_positive(seconds, "seconds", allow_zero=True)
    if isinstance(n_devices, bool) or not isinstance(n_devices, numbers.Integral) or n_devices < 1:
        raise ValueError(f"n_devices must be a positive integer, got {n_devices!r}")
    return EnergyEstimate(seconds / SECONDS_PER_HOUR * n_devices, power_watts, pue, carbon_intensity, n_devices)

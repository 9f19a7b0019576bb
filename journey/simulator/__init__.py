"""A seeded customer-journey simulator: contract-shaped data with a known ground truth.

`simulate()` runs a population through latent phases under an outbound policy (by default a randomized
logging policy with exact propensities); `true_response()` is the ground-truth response model an oracle can use.
See docs/simulator.md.
"""

from journey.simulator.config import STATE_NAMES, SimulationConfig
from journey.simulator.environment import JourneyEnvironment, SimulatedData, simulate
from journey.simulator.io import read_simulation, write_simulation
from journey.simulator.logging_policy import (
    DecisionContext,
    Decisions,
    History,
    OutboundPolicy,
    RandomLoggingPolicy,
    TruthView,
)
from journey.simulator.response import CHANNEL_TRUTHS, CONTENT_TRUTHS, ResponseTruth, true_response

__all__ = [
    "CHANNEL_TRUTHS",
    "CONTENT_TRUTHS",
    "STATE_NAMES",
    "DecisionContext",
    "Decisions",
    "History",
    "JourneyEnvironment",
    "OutboundPolicy",
    "RandomLoggingPolicy",
    "ResponseTruth",
    "SimulatedData",
    "SimulationConfig",
    "TruthView",
    "read_simulation",
    "simulate",
    "true_response",
    "write_simulation",
]

"""Backdoor attacks, one module each, registered by name in ATTACKS."""

from vibe_jax.data.attacks import (  # noqa: F401  (registration)
    adaptive,
    backdoorbench,
    badnets,
    blend,
    ftrojan,
    label_consistent,
    multi,
    none,
    prepoisoned,
    uba,
    wanet,
)
from vibe_jax.data.attacks.base import (
    ATTACKS,
    Attack,
    PoisonedTestSet,
    PoisonedTrainSet,
    attack_parameters,
    make_attack,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "PoisonedTestSet",
    "PoisonedTrainSet",
    "attack_parameters",
    "make_attack",
]

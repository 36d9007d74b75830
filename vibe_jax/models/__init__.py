"""Models: ResNet backbones (build, load from a checkpoint) and the VIBE heads (models.vibe)."""

from vibe_jax.models.backbone import (
    StateMismatchError,
    abstract_backbone,
    backbone_config,
    build_backbone,
    check_state_shapes,
    flat_state,
    load_backbone,
    load_backbone_model,
    unflatten_state,
)
from vibe_jax.models.resnet import ARCHITECTURES, STEMS, ResNet

__all__ = [
    "ARCHITECTURES",
    "STEMS",
    "ResNet",
    "StateMismatchError",
    "abstract_backbone",
    "backbone_config",
    "build_backbone",
    "check_state_shapes",
    "flat_state",
    "load_backbone",
    "load_backbone_model",
    "unflatten_state",
]

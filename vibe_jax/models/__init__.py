"""Models: the VIBE heads (and backbones)."""

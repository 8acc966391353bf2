"""The model organism: a procedural shapes world and a tiny LLaVA trained on its captions only.

    from emergence.organism import ShapesWorld, load_organism
    model, processor = load_organism()          # the shipped weights (an ordinary HF model folder)
    scene = ShapesWorld(seed=7).scene(0)        # image, caption, masks, word referents

This package is the specimen (its world, model, training and how to read its captions); the experiments run on it
live in :mod:`emergence.studies`.
"""

from .model import ORGANISM_DIR, load_organism
from .world import (
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
    PARTS,
    SHAPES,
    Question,
    ReferringExpression,
    Scene,
    ShapeObject,
    ShapesWorld,
)

__all__ = [
    "BACKGROUNDS",
    "CATEGORIES",
    "COLOURS",
    "ORGANISM_DIR",
    "PARTS",
    "SHAPES",
    "Question",
    "ReferringExpression",
    "Scene",
    "ShapeObject",
    "ShapesWorld",
    "load_organism",
]

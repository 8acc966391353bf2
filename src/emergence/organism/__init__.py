"""The model organisms: a procedural shapes world, and a tiny LLaVA and a tiny Fuyu (one transformer reading image
patches, ``design="fuyu"``) trained on its captions only.

    from emergence.organism import ShapesWorld, load_organism
    model, processor = load_organism()          # the shipped weights (an ordinary HF model folder)
    scene = ShapesWorld(seed=7).scene(0)        # image, caption, masks, word referents

This package is the specimen (its world, model, training and how to read its captions); the experiments run on it
live in :mod:`emergence.studies`.
"""

from .model import DESIGNS, FUYU_DIR, ORGANISM_DIR, load_organism, organism_dir
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
    "DESIGNS",
    "FUYU_DIR",
    "ORGANISM_DIR",
    "PARTS",
    "SHAPES",
    "Question",
    "ReferringExpression",
    "Scene",
    "ShapeObject",
    "ShapesWorld",
    "load_organism",
    "organism_dir",
]

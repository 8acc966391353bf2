"""The model organism: a procedural shapes world and a tiny LLaVA trained on its captions only."""

from .world import BACKGROUNDS, CATEGORIES, COLOURS, PARTS, SHAPES, Question, ReferringExpression, Scene, ShapeObject, ShapesWorld

__all__ = [
    "BACKGROUNDS",
    "CATEGORIES",
    "COLOURS",
    "PARTS",
    "SHAPES",
    "Question",
    "ReferringExpression",
    "Scene",
    "ShapeObject",
    "ShapesWorld",
]

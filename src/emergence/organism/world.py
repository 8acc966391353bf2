"""The shapes world: procedural scenes with exact masks, captions and per-word referents.

Every scene is a pure function of ``(seed, index)``. A scene holds 1-3 objects placed in a 2 x 3 grid of slots (so
their location words are exact; large neighbours may touch, and masks hold the visible pixels only), on a plain,
striped or dotted background. Objects have a
colour, a shape, a size, optionally a state (``hollow``: drawn as an outline) and, for three shapes, a part of another
colour (a house's roof, a flag's pole, a mug's handle).

Caption grammar (objects in slot order, column-major from the left)::

    a large red house with a blue roof at the top left and a small hollow green circle at the bottom right
    on a striped background .

Each caption word has a referent mask (or none) and a concept category:

===============  ===========  ===================================================
word             category     referent
===============  ===========  ===================================================
size, colour     appearance   the object's body (colour) / whole object (size)
hollow           state        the object's body
shape noun       entity       the whole object (body and part)
part colour      appearance   the part
part noun        part         the part
top/left/...     location     the whole object
striped/plain... context      the background (pixels of no object)
background       context      the background
a, with, and...  none         none
===============  ===========  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "SHAPES",
    "PARTS",
    "BACKGROUNDS",
    "CATEGORIES",
    "ShapeObject",
    "Scene",
    "ShapesWorld",
    "ReferringExpression",
    "Question",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 65),
    "blue": (45, 80, 220),
    "yellow": (235, 205, 35),
    "purple": (145, 60, 185),
    "orange": (245, 135, 30),
}
SHAPES = ("circle", "square", "triangle", "house", "flag", "mug")
PARTS = {"house": "roof", "flag": "pole", "mug": "handle"}
SIZES = {"small": 12, "large": 19}
BACKGROUNDS = ("plain", "striped", "dotted")
CATEGORIES = ("appearance", "location", "part", "context", "entity", "state")
ROWS = ("top", "bottom")
COLS = ("left", "middle", "right")
IMAGE_SIZE = 64
_BG_BASE = (200, 200, 196)
_BG_ALT = (170, 170, 166)


@dataclass
class ShapeObject:
    """One object. Masks are ``[H, W]`` bool; ``mask`` is the union of ``body`` and every part."""

    shape: str
    colour: str
    size: str
    row: str
    col: str
    hollow: bool
    body: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    part_colour: str | None = None

    @property
    def mask(self) -> np.ndarray:
        out = self.body.copy()
        for m in self.parts.values():
            out |= m
        return out

    @property
    def part(self) -> str | None:
        return PARTS.get(self.shape)

    def phrase_words(self) -> list[tuple[str, np.ndarray | None, str | None]]:
        """``(word, referent, category)`` for this object's phrase, in caption order."""
        whole = self.mask
        words: list[tuple[str, np.ndarray | None, str | None]] = [
            ("a", None, None),
            (self.size, whole, "appearance"),
        ]
        if self.hollow:
            words.append(("hollow", self.body, "state"))
        words += [(self.colour, self.body, "appearance"), (self.shape, whole, "entity")]
        if self.part:
            pm = self.parts[self.part]
            article = "an" if self.part_colour[0] in "aeiou" else "a"
            words += [("with", None, None), (article, None, None), (self.part_colour, pm, "appearance"),
                      (self.part, pm, "part")]
        words += [("at", None, None), ("the", None, None), (self.row, whole, "location"), (self.col, whole, "location")]
        return words


@dataclass
class ReferringExpression:
    """A phrase that names one region of the scene: ``text``, its ``mask`` and the concept it targets."""

    text: str
    mask: np.ndarray
    category: str


@dataclass
class Question:
    """A two-choice question (MMVP style) with the mask of what it asks about."""

    text: str
    options: tuple[str, str]
    answer: str
    mask: np.ndarray


@dataclass
class Scene:
    """One rendered scene. ``image`` is a 64 x 64 RGB ``PIL.Image``."""

    image: Image.Image
    objects: list[ShapeObject]
    background: str
    index: int
    seed: int

    @property
    def background_mask(self) -> np.ndarray:
        out = np.ones((IMAGE_SIZE, IMAGE_SIZE), bool)
        for obj in self.objects:
            out &= ~obj.mask
        return out

    def word_referents(self) -> list[tuple[str, np.ndarray | None, str | None]]:
        """``(word, mask or None, category or None)`` for every caption word, in caption order."""
        words: list[tuple[str, np.ndarray | None, str | None]] = []
        for k, obj in enumerate(self.objects):
            if k:
                words.append(("and", None, None))
            words += obj.phrase_words()
        bg = self.background_mask
        words += [("on", None, None), ("a", None, None), (self.background, bg, "context"),
                  ("background", bg, "context"), (".", None, None)]
        return words

    @property
    def caption(self) -> str:
        return " ".join(w for w, _, _ in self.word_referents())

    def referring_expressions(self) -> list[ReferringExpression]:
        """Per object: ``the <colour> <shape>`` (entity) and, with a part, ``the <part> of the <colour> <shape>``."""
        out = []
        for obj in self.objects:
            out.append(ReferringExpression(f"the {obj.colour} {obj.shape}", obj.mask, "entity"))
            if obj.part:
                out.append(ReferringExpression(f"the {obj.part} of the {obj.colour} {obj.shape}",
                                               obj.parts[obj.part], "part"))
        return out

    def questions(self) -> list[Question]:
        """Two-choice questions about colour, horizontal location and state, with deterministic distractors."""
        rng = np.random.RandomState((self.seed * 1_000_003 + self.index) % 2**31)
        out = []
        for obj in self.objects:
            other = [c for c in COLOURS if c != obj.colour][rng.randint(len(COLOURS) - 1)]
            opts = (obj.colour, other) if rng.rand() < 0.5 else (other, obj.colour)
            out.append(Question(f"what colour is the {obj.shape} at the {obj.row} {obj.col} ?", opts, obj.colour,
                                obj.body))
            side = "left" if obj.col == "left" else "right" if obj.col == "right" else None
            if side is not None:
                opts = ("left", "right")
                out.append(Question(f"is the {obj.colour} {obj.shape} on the left or on the right ?", opts, side,
                                    obj.mask))
            out.append(Question(f"is the {obj.colour} {obj.shape} hollow or solid ?", ("hollow", "solid"),
                                "hollow" if obj.hollow else "solid", obj.body))
        return out


class ShapesWorld:
    """Deterministic generator of scenes: ``ShapesWorld(seed).scene(i)`` is the same on every machine.

    Args:
        seed: world seed; training uses one seed, evaluation others.
        max_objects: 1..3 objects per scene.
    """

    def __init__(self, seed: int = 0, max_objects: int = 3) -> None:
        if not 1 <= max_objects <= 3:
            raise ValueError(f"max_objects must be 1, 2 or 3, got {max_objects}")
        self.seed = int(seed)
        self.max_objects = max_objects

    def scene(self, index: int) -> Scene:
        """Scene number ``index`` (any non-negative int)."""
        if index < 0:
            raise ValueError(f"scene index must be >= 0, got {index}")
        rng = np.random.RandomState((self.seed * 7_919 + index * 104_729 + 17) % 2**32)
        n = rng.randint(1, self.max_objects + 1)
        slots = sorted(rng.choice(6, size=n, replace=False).tolist(), key=lambda s: (s % 3, s // 3))
        colours = rng.choice(len(COLOURS), size=n, replace=False)
        names = list(COLOURS)
        background = BACKGROUNDS[rng.randint(len(BACKGROUNDS))]
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), _BG_BASE)
        draw = ImageDraw.Draw(image)
        _draw_background(draw, background, rng)
        objects = []
        for slot, ci in zip(slots, colours):
            row, col = slot // 3, slot % 3
            shape = SHAPES[rng.randint(len(SHAPES))]
            size = "large" if rng.rand() < 0.5 else "small"
            hollow = bool(rng.rand() < 0.2) and shape in ("circle", "square", "triangle")
            colour = names[ci]
            part_colour = None
            if shape in PARTS:
                part_colour = [c for c in names if c != colour][rng.randint(len(names) - 1)]
            obj = _render_object(draw, shape, colour, part_colour, size, hollow, row, col, rng)
            obj.row, obj.col = ROWS[row], COLS[col]
            objects.append(obj)
        # large neighbours may touch: masks keep only the visible pixels (later objects are drawn on top)
        covered = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
        for obj in reversed(objects):
            obj.body &= ~covered
            for name in obj.parts:
                obj.parts[name] &= ~covered
            covered |= obj.mask
        return Scene(image=image, objects=objects, background=background, index=index, seed=self.seed)


def _draw_background(draw: ImageDraw.ImageDraw, kind: str, rng: np.random.RandomState) -> None:
    if kind == "striped":
        phase = rng.randint(6)
        for x in range(-IMAGE_SIZE, 2 * IMAGE_SIZE, 6):
            draw.line([(x + phase, 0), (x + phase + IMAGE_SIZE, IMAGE_SIZE)], fill=_BG_ALT, width=2)
    elif kind == "dotted":
        off = rng.randint(5)
        for y in range(off, IMAGE_SIZE, 5):
            for x in range(off, IMAGE_SIZE, 5):
                draw.point((x, y), fill=_BG_ALT)
                draw.point((x + 1, y), fill=_BG_ALT)


def _render_object(draw, shape, colour, part_colour, size, hollow, row, col, rng) -> ShapeObject:
    s = SIZES[size]
    cell_w, cell_h = IMAGE_SIZE / 3, IMAGE_SIZE / 2
    cx = int(cell_w * (col + 0.5) + rng.randint(-2, 3))
    cy = int(cell_h * (row + 0.5) + rng.randint(-3, 4))
    x0, y0, x1, y1 = cx - s // 2, cy - s // 2, cx - s // 2 + s, cy - s // 2 + s
    rgb = COLOURS[colour]
    body_prims: list = []
    part_prims: list = []
    if shape == "circle":
        body_prims.append(("ellipse", ([x0, y0, x1, y1],), {}))
    elif shape == "square":
        body_prims.append(("rectangle", ([x0, y0, x1, y1],), {}))
    elif shape == "triangle":
        body_prims.append(("polygon", ([(cx, y0), (x1, y1), (x0, y1)],), {}))
    elif shape == "house":  # body below, roof above
        mid = y0 + s * 2 // 5
        body_prims.append(("rectangle", ([x0 + 1, mid, x1 - 1, y1],), {}))
        part_prims.append(("polygon", ([(cx, y0), (x1 + 1, mid - 1), (x0 - 1, mid - 1)],), {}))
    elif shape == "flag":  # pole on the left, cloth at the top right
        pw = max(2, s // 7)
        part_prims.append(("rectangle", ([x0, y0, x0 + pw - 1, y1],), {}))
        body_prims.append(("rectangle", ([x0 + pw, y0, x1, y0 + s * 11 // 20],), {}))
    elif shape == "mug":  # body on the left, handle on the right
        hw = max(3, s // 3)
        body_prims.append(("rectangle", ([x0, y0 + 1, x1 - hw, y1],), {}))
        part_prims.append(("rectangle", ([x1 - hw + 1, y0 + s // 4, x1, y1 - s // 4],), {}))
    body = _draw_prims(draw, body_prims, rgb, hollow)
    parts = {}
    if part_prims:
        pmask = _draw_prims(draw, part_prims, COLOURS[part_colour], False)
        body &= ~pmask
        parts[PARTS[shape]] = pmask
    return ShapeObject(shape=shape, colour=colour, size=size, row="", col="", hollow=hollow, body=body, parts=parts,
                       part_colour=part_colour)


def _draw_prims(draw: ImageDraw.ImageDraw, prims, rgb, hollow: bool) -> np.ndarray:
    mask_img = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    md = ImageDraw.Draw(mask_img)
    for kind, args, _ in prims:
        if hollow:
            getattr(draw, kind)(*args, outline=rgb, width=2)
            getattr(md, kind)(*args, outline=255, width=2)
        else:
            getattr(draw, kind)(*args, fill=rgb)
            getattr(md, kind)(*args, fill=255)
    return np.asarray(mask_img) > 0

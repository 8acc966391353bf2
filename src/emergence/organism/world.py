"""The shapes world: procedural scenes with exact masks, captions and per-word referents.

Every scene is a pure function of ``(seed, index)``. A scene holds 1-3 objects placed in a 2 x 2 grid of slots (so
their location words are exact; masks hold the visible pixels only), on a plain, striped or dotted background.
Objects have a colour, a body shape, a size, optionally a state (``hollow``: drawn as an outline; large bodies only)
and, half of them, a part of another colour: a roof (a triangle on top), a pole (a bar along the left side) or a
handle (a bar on the right). Any body can carry any part, so naming the part requires looking at it.

Caption grammar (objects in slot order, column-major from the left; v7 names each object's slot first)::

    at the top left a solid red square with a blue roof and at the bottom right a hollow green circle
    on a striped background .

Each caption word has a referent mask (or none) and a concept category:

===============  ===========  ===================================================
word             category     referent
===============  ===========  ===================================================
solid/hollow     state        the object's body
colour           appearance   the object's body
shape noun       entity       the whole object (body and part)
part colour      appearance   the part
part noun        part         the part
top/left/...     location     the whole object
striped/plain... context      the background (pixels of no object)
background       context      the background
a, with, and...  none         none
===============  ===========  ===================================================

Every colour occurs at most once per scene (bodies and parts together), so a colour word names one region.

Why the world looks the way it does (the grammar, free-floating objects, the background, part and outline
sizes), with the measurements behind each choice: ``docs/organism_notes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

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

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 65),
    "blue": (45, 80, 220),
    "yellow": (235, 205, 35),
    "purple": (145, 60, 185),
    "orange": (245, 135, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PARTS = ("roof", "pole", "handle")
PART_PROBABILITY = 0.5
SIZES = {"small": 20, "large": 28}
BACKGROUNDS = ("plain", "striped", "dotted")
CATEGORIES = ("appearance", "location", "part", "context", "entity", "state")
ROWS = ("top", "bottom")
COLS = ("left", "right")
IMAGE_SIZE = 64
JITTER = 2
ROOF, POLE, HANDLE, HANDLE_SPAN = 0.5, 0.42, 0.45, 0.7  # part sizes as fractions of the object size
OUTLINE = 5  # hollow objects' outline width
HOLLOW_P, HOLLOW_SIZES = 0.35, ("large",)  # of large non-cross bodies: about 14% of all objects (v5: 16%)
_BG_BASE = (200, 200, 196)
_BG_ALT = (140, 140, 136)


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
        """The part's name (``roof``, ``pole``, ``handle``) or ``None``."""
        return next(iter(self.parts), None)

    def phrase_words(self) -> list[tuple[str, np.ndarray | None, str | None]]:
        """``(word, referent, category)`` for this object's phrase, in caption order."""
        whole = self.mask
        words: list[tuple[str, np.ndarray | None, str | None]] = [
            ("at", None, None), ("the", None, None), (self.row, whole, "location"), (self.col, whole, "location"),
            ("a", None, None), ("hollow" if self.hollow else "solid", self.body, "state"),
            (self.colour, self.body, "appearance"), (self.shape, whole, "entity"),
        ]
        if self.part:
            pm = self.parts[self.part]
            article = "an" if self.part_colour[0] in "aeiou" else "a"
            words += [("with", None, None), (article, None, None), (self.part_colour, pm, "appearance"),
                      (self.part, pm, "part")]
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
        """Per object: ``the <size> <colour> <shape>`` (entity) and, with a part, ``the <part> of the <colour>
        <shape>``."""
        out = []
        for obj in self.objects:
            out.append(ReferringExpression(f"the {obj.size} {obj.colour} {obj.shape}", obj.mask, "entity"))
            if obj.part:
                out.append(ReferringExpression(f"the {obj.part} of the {obj.colour} {obj.shape}",
                                               obj.parts[obj.part], "part"))
        return out

    def questions(self) -> list[Question]:
        """Two-choice questions about colour, horizontal location, state and size, with deterministic distractors."""
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
            out.append(Question(f"is the {obj.colour} {obj.shape} large or small ?", ("large", "small"), obj.size,
                                obj.mask))
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
        n_cols = len(COLS)
        slots = sorted(rng.choice(len(ROWS) * n_cols, size=n, replace=False).tolist(),
                       key=lambda s: (s % n_cols, s // n_cols))
        # every colour at most once per scene: bodies first, parts from the rest
        palette = rng.permutation(len(COLOURS)).tolist()
        names = list(COLOURS)
        colours = palette[:n]
        spare = palette[n:]
        background = BACKGROUNDS[rng.randint(len(BACKGROUNDS))]
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), _BG_BASE)
        draw = ImageDraw.Draw(image)
        _draw_background(draw, background, rng)
        objects = []
        for slot, ci in zip(slots, colours):
            row, col = slot // n_cols, slot % n_cols
            shape = SHAPES[rng.randint(len(SHAPES))]
            size = "large" if rng.rand() < 0.5 else "small"
            hollow = bool(rng.rand() < HOLLOW_P) and shape != "cross" and size in HOLLOW_SIZES
            colour = names[ci]
            part = part_colour = None
            if rng.rand() < PART_PROBABILITY:
                part = PARTS[rng.randint(len(PARTS))]
                part_colour = names[spare.pop(rng.randint(len(spare)))]
            obj = _render_object(draw, shape, colour, part, part_colour, size, hollow, row, col, rng)
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
        off = rng.randint(4)
        for y in range(off, IMAGE_SIZE, 4):
            for x in range(off, IMAGE_SIZE, 4):
                draw.rectangle([x, y, x + 1, y + 1], fill=_BG_ALT)


def _body_prims(shape: str, x0: int, y0: int, x1: int, y1: int) -> list:
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    if shape == "circle":
        return [("ellipse", ([x0, y0, x1, y1],))]
    if shape == "square":
        return [("rectangle", ([x0, y0, x1, y1],))]
    if shape == "triangle":
        return [("polygon", ([(cx, y0), (x1, y1), (x0, y1)],))]
    if shape == "diamond":
        return [("polygon", ([(cx, y0), (x1, cy), (cx, y1), (x0, cy)],))]
    if shape == "cross":
        t = max(3, (x1 - x0) // 3)
        return [("rectangle", ([cx - t // 2 - 1, y0, cx + t // 2, y1],)),
                ("rectangle", ([x0, cy - t // 2 - 1, x1, cy + t // 2],))]
    raise ValueError(f"unknown shape {shape!r}")


def _render_object(draw, shape, colour, part, part_colour, size, hollow, row, col, rng) -> ShapeObject:
    s = SIZES[size]
    cell_w, cell_h = IMAGE_SIZE / len(COLS), IMAGE_SIZE / len(ROWS)
    cx = int(cell_w * (col + 0.5) + rng.randint(-JITTER, JITTER + 1))
    cy = int(cell_h * (row + 0.5) + rng.randint(-JITTER, JITTER + 1))
    x0, y0 = cx - s // 2, cy - s // 2
    x1, y1 = x0 + s, y0 + s
    # the part takes a strip of the object's box; the body fills the rest
    bx0, by0, bx1, by1 = x0, y0, x1, y1
    part_prims: list = []
    if part == "roof":  # a triangle on top
        mid = y0 + int(s * ROOF)
        part_prims.append(("polygon", ([(cx, y0), (x1 + 1, mid - 1), (x0 - 1, mid - 1)],)))
        by0 = mid
    elif part == "pole":  # a bar along the left side, full height
        pw = max(2, int(s * POLE))
        part_prims.append(("rectangle", ([x0, y0, x0 + pw - 1, y1],)))
        bx0 = x0 + pw
    elif part == "handle":  # a bar on the right, over the middle HANDLE_SPAN of the height
        hw = max(3, int(s * HANDLE))
        inset = int(s * (1 - HANDLE_SPAN) / 2)
        part_prims.append(("rectangle", ([x1 - hw + 1, y0 + inset, x1, y1 - inset],)))
        bx1 = x1 - hw
    body = _draw_prims(draw, _body_prims(shape, bx0, by0, bx1, by1), COLOURS[colour], hollow)
    parts = {}
    if part_prims:
        pmask = _draw_prims(draw, part_prims, COLOURS[part_colour], False)
        body &= ~pmask
        parts[part] = pmask
    return ShapeObject(shape=shape, colour=colour, size=size, row="", col="", hollow=hollow, body=body, parts=parts,
                       part_colour=part_colour)


def _draw_prims(draw: ImageDraw.ImageDraw, prims, rgb, hollow: bool) -> np.ndarray:
    mask_img = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    md = ImageDraw.Draw(mask_img)
    for kind, args in prims:
        if hollow:
            getattr(draw, kind)(*args, outline=rgb, width=OUTLINE)
            getattr(md, kind)(*args, outline=255, width=OUTLINE)
        else:
            getattr(draw, kind)(*args, fill=rgb)
            getattr(md, kind)(*args, fill=255)
    return np.asarray(mask_img) > 0

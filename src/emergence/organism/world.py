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

Why this grammar (measured on held-out scenes, attention of the row that predicts each word): the first word of an
object's phrase is predicted by a row that still has to find the next object, and its map is diffuse; the next word's
row looks at the object (v0: 31-49% pointing for leading size words, 93% for the colours after them). Up to v6 a state
word came first and the location last; v7 puts the slot first ("at the top left a solid red ..."), so every later row of
the phrase is written knowing where the object is. With v6's 5-layer decoder (2000 steps x 48, seed 0) this captioned
0.97 of 150 scenes of seed 7 exactly and pointed at colours at 0.84 (v6 on 500 scenes: 0.88 and 0.80), but at entity
nouns at 0.56 and parts at 0.63 (v6: 0.89 / 0.83): its layer-0 maps still found them (0.93 / 0.81 on 80 scenes) while
the last layer, the strongest in the average, pointed at 0.19 / 0.37. Of its 68 entity misses on 80 scenes, half lay
within 3 px of the object; 41 (the two counts may overlap) fell on four fixed patches (the last visual token, two other
row ends, one on the left edge). A guess, not tested: in a causal decoder a later visual token has read the patches
before it, so deep layers find summaries there. A 3-layer decoder (v7, shipped) keeps the slot-first gains and points at
entity nouns and parts again (README). A noun predicted right after its colour word is found by matching that colour
(85% for shape nouns), hence the part's colour before the part's name; with parts tied to shapes (house/roof) or named
before their colour, the part noun's row looked at the object's body (10-21%). Sizes are in every scene's referring
expressions and questions, not in its caption: a size is judged against the object's surroundings and its row spreads
over the slot.

Why objects float freely instead of sitting on the organism's 8-px patch grid (tried and dropped; 2000 steps, 150
scenes of seed 7): on the grid, bodies 2 or 3 patches square with one-patch parts beside them, a map of each region's
patch coverage (upsampled like the model's maps; 400 scenes) points at 0.99 for colours and shapes and 1.0 for parts
(on v5's world: 0.91 for colours, 0.78 for large poles, narrower than a patch), and captions came out 0.97 exact, but
the trained model's maps pointed worse than on v5's world (appearance 0.73, entity 0.46, part 0.48). On the grid a
triangle or a cross differs from a square only in which patches are empty, and a handle from a pole in the empty
patches above and below it; the rows naming them looked at those empty patches (entity pointing: triangles 0.04,
large crosses 0.04, squares 0.84; large handles 0.0). Free-floating objects keep the evidence inside their own,
partly covered patches.

Why the background pattern is dark and dense (v6; v5 drew stripes and 2-px dots every 5 px in (170, 170, 166)): v5
captioned 0.718 of 500 scenes of seed 7 exactly, its misses nearly all the pattern word (plain / dotted). With the
pattern in (140, 140, 136) and 2 x 2 dots every 4 px, the same scenes captioned 0.914 exactly; that run's entity
pointing fell to 0.50 (`bench/organism_eval_seed7_contrast_variant.json`). v6 keeps this background with the part and
hollow changes below and points at entity nouns at 0.89, so the background alone does not explain that fall. Entity
pointing on the map averaged over all layers and heads varies this much between runs: a 4-layer decoder trained on v6's
world with the same schedule captioned 0.906 exactly but pointed at entity nouns at 0.64 and part nouns at 0.66 (its
layer-0 heads alone: 0.92 and 0.88), and v6 retrained from the same seed with 2 threads instead of 1 pointed at entity
nouns at 0.62 (exact 0.900).

Why parts are wide and hollow bodies large and thick (v6; v5: pole 0.34 and handle 0.4 of the object size, handle over
the middle half of the height, hollow on any size with a 4-px outline). The ceiling is a map of each region's 8-px patch
coverage, rendered like the model's maps and read at its argmax (300-400 scenes of seed 7). With v5's sizes it points at
0.91 for part colours and 0.80 for large poles, narrower than a patch; with v5's hollow rule (any size, 4-px outline)
hollow bodies score 0.38, as the argmax falls into the empty middle. With v6's sizes (pole 0.42, handle 0.45 over 70% of
the height) part colours reach 0.96 and poles 0.92-1.0; with hollow on large bodies only and a 5-px outline, hollow
bodies reach 0.60 and body colours 0.94 (v5: 0.90). v6 trained on the same schedule: part nouns 0.61 -> 0.83, entity
0.73 -> 0.89, exact 0.72 -> 0.88. Its remaining gap is the part's colour word (0.64 on 150 scenes; body colours 0.89):
the row that predicts it, right after "with a", has to find the part first.
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

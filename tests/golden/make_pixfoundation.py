"""Golden outputs of PixFoundation's "when does grounding emerge" reference code, on the organism.

Produces ``tests/golden/pixfoundation_when.npz`` (read by ``tests/test_protocols.py``). Nothing of the reference is
copied into this project: this script reads the reference files of a local checkout at the pinned revisions and
executes their own statements, in order, on inputs made here:

* ``pixmmvp/inference/infer_pixfoundation_when.py`` (MSiam/PixFoundation at 20027b0): lines 249-318 (image-token
  detection, per-step attention over the image tokens averaged over layers and heads, the mean subtraction over the
  answer's steps, token grouping by noun chunks, the per-group mean, bicubic upsampling and the crop), 320-324 (the
  argmax point), 331-375 (the groups' masks, the meta file and the mask files);
* ``aas/utils.py`` (MSiam/groundLMM at c3876df, PixFoundation's submodule): ``group_tokens``, ``get_spacy_embedding``;
* ``pixmmvp/eval/eval_nonpixLMM_when_analysis.py`` (20027b0): ``compute_iou``, ``load_meta_info``,
  ``retrieve_highest_iou``, the position line (129) and the bins (lines 132-139).

The inputs: ``ShapesWorld(41)`` scenes answered by the shipped organism (``describe <expression>``, greedy), the
attentions of an eager ``generate(output_attentions=True)`` (the reference's source), the referred object's mask as
ground truth, and, standing in for two things that cannot run here: a noun-chunk parse (no spaCy English pipeline
can be installed offline; the organism grammar's chunks, saved with the fixture) and SAM (three square masks around
each group's point, one of them the ground truth for a chosen group, so that ties occur; saved with the fixture).

Two variants of the reference are run: as published, and with its one named defect corrected: for the first answer
token the published code reads the prefill's row ``-2`` (the row that predicts the LAST PROMPT token), the
corrected run reads row ``-1`` (the row that predicts the first answer token), as every later step does.

Command (from the repository root, with the references checked out at those revisions):

    python tests/golden/make_pixfoundation.py --pixfoundation /path/to/PixFoundation --groundlmm /path/to/groundLMM

It needs torch, transformers, numpy, opencv and pandas (the reference's imports); no GPU.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
import tempfile
import textwrap
import types
from pathlib import Path

import numpy as np

REVISIONS = {"PixFoundation": "20027b011a77cacbe9be65650debdc1be810b09e", "groundLMM": "c3876df"}
#: sha256 of the reference files this script reads (a changed file is refused)
SHA256 = {
    "pixmmvp/inference/infer_pixfoundation_when.py":
        "a0e1416c962b13f34ef2f1a81a9a4ebc5a490c42fb16f91df916e0c4847f9e27",
    "pixmmvp/eval/eval_nonpixLMM_when_analysis.py":
        "9ce08f6727dcd5b8c37d5fa88a4c276406ee54ef2b2737febaa0478697582cd0",
    "aas/utils.py": "cb19df7e0aab30c90b4bd8ec13e4d731d9ea5a012e94a89310aa956c50ef2981",
}
SEED, SCENES, MAX_NEW = 41, 8, 24
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id in the reference's input_ids


def read_checked(root: Path, rel: str) -> str:
    text = (root / rel).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != SHA256[rel]:
        sys.exit(f"{root / rel} is not the pinned revision (sha256 {digest}); check out {REVISIONS}")
    return text


def functions(source: str, names: list[str], namespace: dict) -> None:
    """Execute the reference's own definitions of ``names`` into ``namespace``."""
    tree = ast.parse(source)
    picked = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    if sorted(n.name for n in picked) != sorted(names):
        sys.exit(f"functions {names} not all found")
    exec(compile(ast.Module(body=picked, type_ignores=[]), "<reference>", "exec"), namespace)


def lines(source: str, first: int, last: int) -> str:
    """Lines ``first..last`` (1-based, inclusive) of the reference, dedented, inside a one-pass loop (the block's
    ``continue`` statements end the pass, as they end the reference's sample)."""
    block = textwrap.dedent("".join(source.splitlines(keepends=True)[first - 1:last]))
    return "for _sample in [0]:\n" + textwrap.indent(block, "    ") + "\n    _completed = True\n"


class Chunk:
    """A spaCy noun chunk's fields that ``group_tokens`` reads."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.start_char = text[start:end], start
        root_start = text.rfind(" ", start, end) + 1 if " " in text[start:end] else start
        self.root = types.SimpleNamespace(text=text[root_start:end], idx=root_start)


class FixedParse:
    """Stands in for a spaCy English pipeline: the noun chunks of the organism's grammar
    (:class:`emergence.organism.reading.OrganismNounChunks`), with the fields ``group_tokens`` reads; ``vector`` is
    constant (the reference's phrase/object similarity is recorded, never used to choose)."""

    def __init__(self) -> None:
        from emergence.organism.reading import OrganismNounChunks

        self.grammar = OrganismNounChunks()
        self.chunks: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, text: str):
        import torch

        spans = self.grammar.spans(text)
        self.chunks[text] = spans
        return types.SimpleNamespace(noun_chunks=[Chunk(text, s, e) for s, e in spans],
                                     vector=torch.ones(4).numpy())


def candidate_masks(points: np.ndarray, gt: np.ndarray, exact: int) -> np.ndarray:
    """``[N, 3, H, W]``: squares of half-side 3, 6 and 12 pixels around each group's point. With ``exact >= 0``,
    group ``exact % N``'s middle mask is the ground truth itself and the group after it repeats its masks (a tie
    at the best IoU, which the reference gives to the later group)."""
    n = len(points)
    h, w = gt.shape
    out = np.zeros((n, 3, h, w), bool)
    for g, (x, y) in enumerate(points):
        for k, r in enumerate((3, 6, 12)):
            out[g, k, max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = True
    if n and exact >= 0:
        exact = exact % n
        out[exact, 1] = gt
        if exact + 1 < n:
            out[exact + 1] = out[exact]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pixfoundation", type=Path, required=True)
    parser.add_argument("--groundlmm", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("pixfoundation_when.npz"))
    args = parser.parse_args()

    import cv2
    import torch
    from PIL import Image

    from emergence import Probe
    from emergence.organism import ShapesWorld, load_organism
    from emergence.organism.model import build_processor

    infer = read_checked(args.pixfoundation, "pixmmvp/inference/infer_pixfoundation_when.py")
    when = read_checked(args.pixfoundation, "pixmmvp/eval/eval_nonpixLMM_when_analysis.py")
    utils = read_checked(args.groundlmm, "aas/utils.py")

    model, _ = load_organism()
    processor = build_processor()  # its PIL image processor, whatever is installed (the tests use the same)
    model.set_attn_implementation("eager")
    probe = Probe(model, processor)
    tokenizer = processor.tokenizer
    image_id = model.config.image_token_id
    world = ShapesWorld(SEED)
    parse = FixedParse()
    record: dict[str, list] = {k: [] for k in ("scene", "expression", "prompt", "answer", "token_ids", "chunks",
                                               "attention", "gt", "masks", "size")}
    golden: dict[str, list] = {f"{v}_{k}": [] for v in ("published", "corrected")
                               for k in ("maps", "points", "when_phrase", "when_mask", "loc", "bin", "best_iou")}
    golden["published_bins"], golden["corrected_bins"] = [], []
    for index in range(SCENES):
        scene = world.scene(index)
        expression = scene.referring_expressions()[0]
        image = scene.image if index % 2 == 0 else scene.image.resize((96, 64), Image.NEAREST)  # non-square too
        gt = np.asarray(Image.fromarray(expression.mask).resize(image.size, Image.NEAREST), bool)
        prompt = f"describe {expression.text}"
        inputs = probe.prepare(image, prompt)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, output_attentions=True,
                                 return_dict_in_generate=True)
        prompt_len = inputs["input_ids"].shape[1]
        new = out.sequences[0, prompt_len:]
        # the reference's LLaVA: one placeholder in input_ids, sequences without the prompt
        ids = inputs["input_ids"][0].tolist()
        first = ids.index(image_id)
        collapsed = torch.tensor([ids[:first] + [IMAGE_TOKEN_INDEX] + [t for t in ids[first:] if t != image_id]])
        positions = [i for i, t in enumerate(ids) if t == image_id]
        rows = [torch.cat([layer[0, :, -1, positions] for layer in step])  # [L * H, V] per step, the model's rows
                for step in out.attentions]
        L, H = len(out.attentions[0]), out.attentions[0][0].shape[1]
        record["attention"].append(torch.stack(rows).reshape(len(rows), L, H, len(positions)).numpy())
        answer_text = tokenizer.batch_decode(new[None], skip_special_tokens=True)[0]
        parse(answer_text)
        record["scene"].append(index)
        record["expression"].append(expression.text)
        record["prompt"].append(prompt)
        record["answer"].append(answer_text)
        record["token_ids"].append(new.numpy())
        record["chunks"].append(np.asarray(parse.chunks[answer_text], np.int64).reshape(-1, 2))
        record["gt"].append(gt)
        record["size"].append((image.height, image.width))
        for variant in ("published", "corrected"):
            attentions = out.attentions
            if variant == "corrected":  # the prefill's row -1 repeated last, so that the code's row -2 reads it
                attentions = (tuple(torch.cat([layer, layer[:, :, -1:, :]], dim=2) for layer in out.attentions[0]),
                              *out.attentions[1:])
            ns: dict = {"torch": torch, "np": np, "cv2": cv2, "Image": Image, "tokenizer": tokenizer,
                        "spacy_model": parse, "IMAGE_TOKEN_INDEX": IMAGE_TOKEN_INDEX,
                        "input_ids": collapsed, "image_height": image.height, "image_width": image.width,
                        "output_ids": {"attentions": attentions, "sequences": new[None]},
                        "answer": answer_text, "image": image, "photo_id": index + 1,
                        "args": types.SimpleNamespace(reg_tokens=0, feature_height=8, feature_width=8,
                                                      aspect_ratio="original")}
            functions(utils, ["group_tokens", "get_spacy_embedding"], ns)
            ns["Object"] = expression.text
            ns["Object_embedding"] = ns["get_spacy_embedding"](expression.text, parse)
            exec(lines(infer, 249, 318), ns)
            if not ns.get("_completed"):
                sys.exit(f"scene {index}: the reference found no noun chunk")
            exec(lines(infer, 320, 324), ns)
            points = ns["point_coords_np"]
            masks = candidate_masks(points, gt, exact=index if index % 2 == 0 else -1)
            if variant == "corrected":
                record["masks"].append(masks)
            with tempfile.TemporaryDirectory() as tmp:
                ns.update(pred_masks=masks, args=types.SimpleNamespace(preds_dir=f"{tmp}/preds", viz_dir=f"{tmp}/viz"),
                          f=open(f"{tmp}/meta.txt", "w"), os=__import__("os"))
                Path(f"{tmp}/preds").mkdir()
                Path(f"{tmp}/viz").mkdir()
                exec(lines(infer, 331, 375), ns)
                ns["f"].close()
                ev: dict = {"np": np, "cv2": cv2}
                functions(when, ["compute_iou", "load_meta_info", "retrieve_highest_iou"], ev)
                ev["meta_info"] = ev["load_meta_info"](f"{tmp}/meta.txt")
                preds_files = sorted(str(p) for p in Path(f"{tmp}/preds").glob("*.png"))
                best_mask, meta = ev["retrieve_highest_iou"](f"{index + 1}.jpg", preds_files, gt.astype(np.uint8))
                loc_ns = {"token_loc": [], "pred_meta_info": meta}
                exec(textwrap.dedent(when.splitlines(keepends=True)[128]), loc_ns)  # the position line
                bins_ns = {"token_loc": loc_ns["token_loc"], "np": np}
                exec(textwrap.dedent("".join(when.splitlines(keepends=True)[131:139])), bins_ns)
                # which (phrase, mask) file won: the one whose pixels equal the returned mask, last of equals
                winner = [p for p in preds_files
                          if np.array_equal(cv2.imread(p, 0) // 255, best_mask)][-1]
                phrase, mask = (int(v) for v in Path(winner).stem.split("_")[1:3])
                best_iou = float(ev["compute_iou"](best_mask, gt.astype(np.uint8)))
            golden[f"{variant}_maps"].append(ns["upsample_scores"].numpy())
            golden[f"{variant}_points"].append(points.astype(np.int64))
            golden[f"{variant}_when_phrase"].append(phrase)
            golden[f"{variant}_when_mask"].append(mask)
            golden[f"{variant}_loc"].append(loc_ns["token_loc"][0])
            golden[f"{variant}_bin"].append(next(i for i, c in bins_ns["bins"].items() if c))
            golden[f"{variant}_best_iou"].append(best_iou)
        print(f"scene {index}: {answer_text!r} -> when (corrected) phrase {golden['corrected_when_phrase'][-1]}, "
              f"bin {golden['corrected_bin'][-1]}; published phrase {golden['published_when_phrase'][-1]}")
    arrays: dict[str, np.ndarray] = {"revisions": np.asarray(str(REVISIONS))}
    for key, values in {**record, **golden}.items():
        if key == "published_maps":
            continue  # the published points say where its maps differ; the corrected maps are compared whole
        if key in ("attention", "gt", "masks", "token_ids", "chunks", "corrected_maps", "published_points",
                   "corrected_points"):
            for i, v in enumerate(values):
                arrays[f"{key}_{i}"] = np.asarray(v)
        else:
            arrays[key] = np.asarray(values)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

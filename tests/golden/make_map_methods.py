"""Golden outputs of the map methods' reference code, on the organism: relative attention, LocalizationHeads, TAM.

Produces ``tests/golden/map_methods.npz`` (read by ``tests/test_map_method_goldens.py``). Nothing of the references
is copied into this project: this script reads the reference files of local checkouts at the pinned revisions and
executes their own definitions on inputs made here:

* relative attention: ``rel_attention_llava`` of ``llava_methods.py`` (saccharomycetes/mllms_know at a64c5d5), with
  its module constants set for the organism (64 image tokens on an 8 x 8 grid, the organism's image token id,
  ``ATT_LAYER`` each of the organism's three layers). Two adaptations to transformers 5 and a float32 model, which
  change no number: the processor is called with keywords (``text=``, ``images=``; the reference passes them
  positionally in the order of older transformers), and the inputs stay float32 (the reference casts them to
  bfloat16 for its bfloat16 checkpoint).
* LocalizationHeads: the ``LocalizationHeadsFinder`` methods ``vis_attn_summation``, ``find_elbow_point``,
  ``spatial_entropy`` and ``analyze_attention_file`` of ``localization_heads_finder.py`` (seilk/LocalizationHeads at
  8ce33b0), fed the attention file its stage 1 writes (``{layer: [heads, 1, image tokens]}``: the prompt's last row).
  Run as published and with its one named defect corrected: the published code keeps the heads whose FLAT INDEX
  (``layer * H + head``) is at least the elbow head's index; the corrected run keeps the heads whose attention SUM
  is at least the elbow head's sum (the paper's criterion). The correction is a two-line textual patch applied to
  the reference source at run time (below).

* TAM: ``TAM`` of ``tam.py`` (xmed-lab/TAM at 7c7df1d) with its helpers (``id2idx``, ``least_squares``,
  ``rank_guassian_filter``, ``multimodal_process``), called as its ``demo.py`` calls it: once per generation round
  on the logits of the final hidden states (``lm_head(hidden_states[-1])``), ``eval_only``. Its special ids for the
  organism's template (``USER : <image> x 64 <text> ASSISTANT :``): the image = every image token; the prompt text
  = after the last image token up to ``ASSISTANT``; the answer = after ``ASSISTANT :``. Run as published and with
  its two named defects corrected by textual patches (below): (1) round 0 explains the first answer token with the
  class of the LAST PROMPT token (``tokens[logit_list[0].shape[1] - 1]``); corrected: the first answer token's own
  class; (2) round 0 returns the map of the FIRST PROMPT token (``if t == 0: first_ori = img_map``), which the
  reference's evaluation then scores as the first answer token's; corrected: the map of the first answer token.
  A third variant, "aligned", also applies the project's one documented difference (the first prompt token's map
  uses its own class; the reference gives it its row's argmax class), so that it computes what the project claims.

Inputs: ``ShapesWorld(43)`` scenes with the shipped organism (eager attention), prompt ``describe <expression>``
(the organism's chat template), the generic prompt ``Write a general description of the image.``

Command (from the repository root, with the references checked out at those revisions):

    python tests/golden/make_map_methods.py --mllms-know /path/to/mllms_know \
        --localization-heads /path/to/LocalizationHeads --tam /path/to/TAM

It needs torch, transformers, numpy, scipy and opencv; no GPU.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

REVISIONS = {"mllms_know": "a64c5d5a0ece793a2f7dc96e926d283a199033c1",
             "LocalizationHeads": "8ce33b0b24ad85c7aa78fe86f2d8d8bf1ded676c",
             "TAM": "7c7df1d3df418bb9467ca68ff2f00ff1f26a6f4c"}
SHA256 = {"llava_methods.py": "59ce940a4b0435fcf57fa8326893a24b660c1666294aa895706ed52171a0ca18",
          "localization_heads_finder.py": "343e4c23fa80bc5a1792fd27359137912c01c03a93b91c6ac8f6327d3f0a8ba5",
          "tam.py": "18bc233edf416de0846b09f441a7bcf5496916f500da49014ceb3ec8c81f7067"}
TAM_NEW_TOKENS = 12
#: TAM's two defects, corrected (anchor, replacement)
TAM_CORRECTIONS = (
    ("            this_token_idx = logit_list[0].shape[1] - 1\n            cls_id = tokens[this_token_idx]",
     "            this_token_idx = logit_list[0].shape[1] - 1\n            cls_id = tokens[this_token_idx + 1]"),
    ("            if t == 0:\n                first_ori = img_map",
     "            if t == len(prompt):\n                first_ori = img_map"),
)
#: the project's one documented difference from TAM (docs/map_methods.md), applied on top of the corrections for
#: the "aligned" variant: the first prompt token's map uses its own class, as every other prompt token's does (the
#: reference gives it the argmax class of its row, i.e. the model's guess of the NEXT token)
TAM_ALIGNMENT = (("            cls_id = logit_list[0][0, prompt_idx[0] + 1].argmax(0)",
                  "            cls_id = tokens[this_token_idx]"),)
TAM_DEFINITIONS = ["rank_guassian_filter", "least_squares", "multimodal_process", "id2idx", "TAM"]
GENERIC = "Write a general description of the image."
SEED, SCENES = 43, 6
#: the correction of LocalizationHeads' threshold: compare attention sums, not flat head indices
CORRECTION = (("if head_idx >= threshold_idx:", "if sum_result >= summation_values[threshold_idx]:"),
              ('"above_threshold": head_idx >= threshold_idx',
               '"above_threshold": sum_result >= summation_values[threshold_idx]'))


def read_checked(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != SHA256[path.name]:
        sys.exit(f"{path} is not the pinned revision (sha256 {digest}); check out {REVISIONS}")
    return text


def definitions(source: str, names: list[str], namespace: dict) -> None:
    """Execute the reference's own top-level definitions (functions or classes) ``names`` into ``namespace``."""
    tree = ast.parse(source)
    picked = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
    if sorted(n.name for n in picked) != sorted(names):
        sys.exit(f"definitions {names} not all found")
    exec(compile(ast.Module(body=picked, type_ignores=[]), "<reference>", "exec"), namespace)


def patched(source: str, corrections) -> str:
    for old, new in corrections:
        if source.count(old) != 1:
            sys.exit(f"the correction's anchor {old!r} is not in the reference once")
        source = source.replace(old, new)
    return source


class KeywordProcessor:
    """The organism's processor called as the reference calls a processor (``processor(prompt, image, ...)``)."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, text, images, **kwargs):
        out = self.processor(text=text, images=images, **kwargs)
        out.to = lambda device, dtype=None: out  # float32 stays float32 (the reference casts to its bf16 model's)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mllms-know", type=Path, required=True)
    parser.add_argument("--localization-heads", type=Path, required=True)
    parser.add_argument("--tam", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("map_methods.npz"))
    args = parser.parse_args()

    import torch
    import cv2
    from scipy.ndimage import label
    from scipy.optimize import minimize_scalar

    from emergence import Probe
    from emergence.organism import ShapesWorld, load_organism
    from emergence.organism.model import build_processor

    relative_src = read_checked(args.mllms_know / "llava_methods.py")
    heads_src = read_checked(args.localization_heads / "localization_heads_finder.py")
    corrected_src = patched(heads_src, CORRECTION)
    tam_src = read_checked(args.tam / "tam.py")
    tam_corrected = patched(tam_src, TAM_CORRECTIONS)
    tam_aligned = patched(tam_corrected, TAM_ALIGNMENT)

    model, _ = load_organism()
    processor = build_processor()  # its PIL image processor, whatever is installed (the tests use the same)
    model.set_attn_implementation("eager")
    probe = Probe(model, processor)
    image_id = model.config.image_token_id
    layers = model.config.text_config.num_hidden_layers
    world = ShapesWorld(SEED)
    out: dict[str, np.ndarray] = {"revisions": np.asarray(str(REVISIONS))}
    prompts = []
    for index in range(SCENES):
        scene = world.scene(index)
        prompt = f"describe {scene.referring_expressions()[0].text}"
        prompts.append(prompt)
        # relative attention: the reference's function, once per layer
        for layer in range(layers):
            ns = {"torch": torch, "np": np, "NUM_IMG_TOKENS": 64, "NUM_PATCHES": 8, "IMAGE_TOKEN_INDEX": image_id,
                  "ATT_LAYER": layer}
            definitions(relative_src, ["rel_attention_llava"], ns)
            with torch.no_grad():
                rel = ns["rel_attention_llava"](scene.image, probe.build_prompt(prompt), probe.build_prompt(GENERIC),
                                                model, KeywordProcessor(processor))
            out[f"relative_{index}_{layer}"] = np.asarray(rel, np.float32)
        # LocalizationHeads: the attention file of its stage 1, analysed by its stage 2
        inputs = probe.prepare(scene.image, prompt)
        with torch.no_grad():
            attentions = model(**inputs, output_attentions=True).attentions
        positions = (inputs["input_ids"][0] == image_id).nonzero().flatten()
        data = {layer: attentions[layer][0, :, -1:, positions].float() for layer in range(layers)}  # [H, 1, V]
        out[f"heads_attention_{index}"] = torch.stack([data[l][:, 0] for l in range(layers)]).numpy()
        for variant, source in (("published", heads_src), ("corrected", corrected_src)):
            ns = {"torch": torch, "np": np, "label": label, "pickle": pickle, "os": __import__("os"),
                  "List": list, "Dict": dict}
            definitions(source, ["LocalizationHeadsFinder"], ns)
            finder = object.__new__(ns["LocalizationHeadsFinder"])  # its __init__ loads a model; stage 2 needs none
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "attention.pkl"
                with open(path, "wb") as fh:
                    pickle.dump(data, fh)
                results = finder.analyze_attention_file(str(path))
            out[f"heads_{variant}_{index}"] = np.asarray(
                [(r["layer"], r["head"], r["spatial_entropy"], r["bottom_row_focus"], r["above_threshold"])
                 for r in results], np.float64)  # sorted by spatial entropy, as the reference returns them
        # TAM: the reference's function, called per round as its demo calls it
        with torch.no_grad():
            gen = model.generate(**inputs, max_new_tokens=TAM_NEW_TOKENS, do_sample=False, min_new_tokens=TAM_NEW_TOKENS,
                                 output_hidden_states=True, return_dict_in_generate=True)
            logits = [model.lm_head(feats[-1]) for feats in gen.hidden_states]
        vocab = processor.tokenizer.convert_tokens_to_ids
        special = {"img_id": [image_id], "prompt_id": [[image_id], [vocab("ASSISTANT")]],
                   "answer_id": [[vocab("ASSISTANT"), vocab(":")], -1]}
        out[f"tam_tokens_{index}"] = gen.sequences[0, inputs["input_ids"].shape[1]:].numpy()
        for variant, source in (("published", tam_src), ("corrected", tam_corrected), ("aligned", tam_aligned)):
            ns = {"torch": torch, "np": np, "cv2": cv2, "os": __import__("os"), "minimize_scalar": minimize_scalar}
            definitions(source, TAM_DEFINITIONS, ns)
            records: list = []
            maps = [ns["TAM"](gen.sequences[0].tolist(), (8, 8), logits, special, scene.image, processor, "", r,
                              records, True) for r in range(len(logits))]
            out[f"tam_{variant}_{index}"] = np.stack(maps).astype(np.uint8)  # [T, 8, 8] as the reference returns
        print(f"scene {index}: {prompt!r}")
    out["prompts"] = np.asarray(prompts)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Experiments on the model organism (:mod:`emergence.organism`), each one module with its ``emergence organism``
command (the command names are unchanged):

- :mod:`~emergence.studies.evaluate` (``organism eval``): exact captions and attention pointing per concept category;
- :mod:`~emergence.studies.grounding` (``organism ground``): the analyzer on organism scenes;
- :mod:`~emergence.studies.causal` (``organism causal``): head ablation and visual-token knockout;
- :mod:`~emergence.studies.compare` (``organism compare-maps``): every map method on the same scenes;
- :mod:`~emergence.studies.demo` (``emergence demo``): one scene, its figures and summary;
- :mod:`~emergence.studies.scenes`: what they share (a caption's words matched to a scene's referents).

A new study goes here: a function that returns a result object with ``to_dict()``, a ``format_*`` for the terminal and
a ``save_*`` that writes JSON through :func:`emergence.files.write_result_json`; its figure goes in
:mod:`emergence.plotting.studies`.
"""

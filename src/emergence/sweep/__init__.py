"""Batch "when does grounding emerge" sweeps: resumable runs (local or Ray), Parquet + safetensors outputs, reports.

    from emergence.sweep import SweepConfig, run_sweep, make_report
    run_sweep(SweepConfig(out="sweeps/shapes", dataset="shapes", dataset_kwargs={"n": 100}))
    make_report("sweeps/shapes")
"""

from .report import make_report
from .runner import SweepConfig, run_sweep, work_items
from .store import SweepStore, load_sweep
from .vqa import pair_accuracy, paired_analysis, parse_option

__all__ = ["SweepConfig", "run_sweep", "work_items", "SweepStore", "load_sweep", "make_report", "parse_option",
           "pair_accuracy", "paired_analysis"]

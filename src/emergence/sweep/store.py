"""The sweep's output folder: a manifest, Parquet parts and safetensors map shards, committed chunk by chunk.

    OUT/manifest.json             model, revision, versions, seed, every option (written once; a resume checks it)
    OUT/samples/part-00000.parquet  one row per work item (sample x template x task)
    OUT/units/part-00000.parquet    one row per work item x unit (word)
    OUT/maps/shard-00000.safetensors  per item: "<key>/maps" [T, L, V] float16 attention, "<key>/head_mass" [L, H]
    OUT/progress.json             the committed chunk ids

A chunk's files are written to temporary names and renamed into place, then its id is added to ``progress.json``
(also replaced atomically). Readers only trust committed chunks, so a kill at any moment loses at most the chunk in
flight, which a resumed run recomputes (deterministically) and rewrites under the same names: no lost, duplicated or
half-written rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SweepStore", "load_sweep"]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SweepStore:
    """Reads one sweep folder (module docstring); ``writable=True`` (the runner) also creates it and removes the
    temporary files a killed run left behind."""

    def __init__(self, out: str | os.PathLike, writable: bool = False) -> None:
        self.out = Path(out)
        self.writable = writable
        if writable:
            for sub in ("samples", "units", "maps"):
                (self.out / sub).mkdir(parents=True, exist_ok=True)
            for stale in self.out.rglob("*.tmp"):
                stale.unlink()

    def _check_writable(self) -> None:
        if not self.writable:
            raise PermissionError(f"this SweepStore of {str(self.out)!r} is read-only; open it with writable=True")

    # ------------------------------------------------------------------ manifest and progress
    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    def manifest(self) -> dict[str, Any] | None:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._check_writable()
        _atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=1, default=str).encode())

    def committed(self) -> list[int]:
        path = self.out / "progress.json"
        return sorted(json.loads(path.read_text())["chunks"]) if path.exists() else []

    def _commit(self, chunk: int) -> None:
        done = set(self.committed()) | {chunk}
        _atomic_write_bytes(self.out / "progress.json", json.dumps({"chunks": sorted(done)}).encode())

    # ------------------------------------------------------------------ chunks
    def write_chunk(self, chunk: int, sample_rows: list[dict], unit_rows: list[dict], tensors: dict[str, Any]) -> None:
        """Write one chunk's rows and tensors, then commit it."""
        self._check_writable()
        import io

        import pandas as pd
        from safetensors.torch import save as save_tensors

        for name, rows in (("samples", sample_rows), ("units", unit_rows)):
            buf = io.BytesIO()
            pd.DataFrame(rows).to_parquet(buf, index=False)
            _atomic_write_bytes(self.out / name / f"part-{chunk:05d}.parquet", buf.getvalue())
        data = save_tensors({k: v.contiguous() for k, v in tensors.items()}) if tensors else b""
        _atomic_write_bytes(self.out / "maps" / f"shard-{chunk:05d}.safetensors", data)
        self._commit(chunk)

    def table(self, name: str) -> Any:
        """The committed rows of ``"samples"`` or ``"units"`` as one DataFrame, in work order."""
        import pandas as pd

        parts = [self.out / name / f"part-{c:05d}.parquet" for c in self.committed()]
        frames = [pd.read_parquet(p) for p in parts]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def tensors(self, key_prefix: str = "", key_suffix: str = "") -> dict[str, Any]:
        """Committed tensors whose key starts with ``key_prefix`` and ends with ``key_suffix`` (default: all); only
        those are read from the shards."""
        from safetensors import safe_open

        out: dict[str, Any] = {}
        for c in self.committed():
            path = self.out / "maps" / f"shard-{c:05d}.safetensors"
            if path.stat().st_size == 0:  # a chunk without tensors
                continue
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    if key.startswith(key_prefix) and key.endswith(key_suffix):
                        out[key] = fh.get_tensor(key)
        return out


def load_sweep(out: str | os.PathLike) -> tuple[Any, Any, dict[str, Any]]:
    """``(samples, units, manifest)`` of a sweep folder (committed chunks only)."""
    store = SweepStore(out)
    manifest = store.manifest()
    if manifest is None:
        raise FileNotFoundError(f"{str(out)!r} holds no sweep (no manifest.json)")
    return store.table("samples"), store.table("units"), manifest

"""The sweep's output folder: a manifest, Parquet parts and safetensors map shards, committed chunk by chunk.

    OUT/.emergence.json           marks the folder as an emergence sweep (nothing else is ever written into a folder)
    OUT/.lock                     held (flock) by the one process writing the sweep
    OUT/manifest.json             model, revision, versions, environment, dataset fingerprint, every option
                                  (created exclusively, once; a resume checks it)
    OUT/samples/part-00000.parquet  one row per work item (sample x template x task)
    OUT/units/part-00000.parquet    one row per work item x unit (word)
    OUT/maps/shard-00000.safetensors  per item: "<key>/maps" [T, L, V] float16 attention, "<key>/head_mass" [L, H]
    OUT/progress.json             per committed chunk: each file's size and SHA-256, and the environment id

A chunk's files are written to temporary names and renamed into place, then the chunk is added to ``progress.json``
(also replaced atomically) with its files' sizes and checksums. Readers only trust committed chunks whose files still
match what was committed; a resume recomputes chunks whose files were truncated, edited or removed. A kill at any
moment loses at most the chunk in flight, which a resumed run recomputes (deterministically) and rewrites under the
same names: no lost, duplicated or half-written rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import EmergenceError
from ..files import (
    OutputDirError,
    atomic_write_bytes,
    atomic_write_json,
    check_output_dir,
    is_own_dir,
    mark_output_dir,
    output_lock,
    remove_own_temporaries,
)

__all__ = ["SweepError", "SweepStore", "load_sweep"]

_SUBDIRS = ("samples", "units", "maps")


class SweepError(EmergenceError, ValueError):
    """A sweep folder cannot be used as asked: another sweep holds it, its files are damaged, or resuming it would
    mix rows of different options, data or environments."""


def _chunk_files(chunk: int) -> list[str]:
    return [f"samples/part-{chunk:05d}.parquet", f"units/part-{chunk:05d}.parquet",
            f"maps/shard-{chunk:05d}.safetensors"]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mismatch(rel: str, data: bytes, expected: dict[str, Any] | None) -> str | None:
    """Why ``data`` is not the file ``rel`` that was committed, or ``None`` (also when nothing was recorded)."""
    if expected is None:
        return None
    if len(data) != expected["size"]:
        return f"{rel} has {len(data)} bytes, {expected['size']} were committed"
    if _digest(data) != expected["sha256"]:
        return f"{rel} was changed after it was committed (checksum differs)"
    return None


class SweepStore:
    """One sweep folder (module docstring).

    ``writable=False`` (readers, the report) never creates, locks or deletes anything. ``writable=True`` (the runner)
    claims the folder (new, empty, or already a sweep; anything else is refused), takes an exclusive lock on it for the
    life of the store (a second writer gets a :class:`SweepError`), and removes only the temporary files of its own
    naming that a killed run left behind.
    """

    def __init__(self, out: str | os.PathLike, writable: bool = False) -> None:
        self.out = Path(out)
        self.writable = writable
        self._lock_held: Any = None  # the held output_lock (writers only)
        if writable:
            check_output_dir(self.out, "sweep")
            self._lock()  # marker, sub-folders and clean-up only under the lock
            mark_output_dir(self.out, "sweep")
            for sub in _SUBDIRS:
                (self.out / sub).mkdir(exist_ok=True)
            remove_own_temporaries([self.out, *(self.out / s for s in _SUBDIRS)])

    # ------------------------------------------------------------------ lock
    def _lock(self) -> None:
        lock = output_lock(self.out)  # the one flock of output folders (emergence.files)
        try:
            lock.__enter__()
        except OutputDirError:
            raise SweepError(f"another process is writing the sweep in {str(self.out)!r}; wait for it to finish, or "
                             "use another --out") from None
        self._lock_held = lock

    def close(self) -> None:
        """Release the writer's lock (also on garbage collection)."""
        lock, self._lock_held = self._lock_held, None
        if lock is not None:
            lock.__exit__(None, None, None)  # closes the descriptor, which releases the flock

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if not self.writable:
            raise PermissionError(f"this SweepStore of {str(self.out)!r} is read-only; open it with writable=True")

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` when there is none.

        Raises:
            SweepError: the manifest exists but is not readable JSON.
        """
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SweepError(f"cannot read {str(self.manifest_path)!r}: {exc}; the sweep folder is damaged "
                             "(start a new sweep in another folder)") from exc

    def create_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the manifest exclusively; when another process created it first, return that one instead."""
        self._check_writable()
        tmp = self.out / f".manifest.{os.getpid()}.json.emergence-tmp"
        tmp.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
        try:
            os.link(tmp, self.manifest_path)  # atomic, fails if it exists
        except FileExistsError:
            return self.manifest() or manifest
        finally:
            tmp.unlink(missing_ok=True)
        return manifest

    # ------------------------------------------------------------------ progress
    def _progress(self) -> dict[str, Any]:
        path = self.out / "progress.json"
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SweepError(f"cannot read {str(path)!r} ({exc}); it is damaged. Delete it to recompute every chunk "
                             "of this sweep (the manifest keeps the options).") from exc
        chunks = doc.get("chunks") if isinstance(doc, dict) else None
        if isinstance(chunks, list):  # format 1: ids only, nothing to verify
            return {str(c): {} for c in chunks}
        if not isinstance(chunks, dict):
            raise SweepError(f"{str(path)!r} is not a sweep progress file (no 'chunks'); delete it to recompute")
        return chunks

    def committed(self) -> list[int]:
        """Ids of the committed chunks (not verified; see :meth:`verify`)."""
        return sorted(int(c) for c in self._progress())

    def chunk_records(self) -> dict[int, dict[str, Any]]:
        """``{chunk: {"files": {path: {"size", "sha256"}}, "env": id}}`` of the committed chunks, in chunk order (the
        work order, whatever order they were committed in)."""
        return {int(c): rec for c, rec in sorted(self._progress().items(), key=lambda kv: int(kv[0]))}

    def verify(self, chunk: int, record: dict[str, Any] | None = None) -> list[str]:
        """Problems of one committed chunk's files (missing, other size, other checksum); empty when intact."""
        record = self.chunk_records().get(chunk, {}) if record is None else record
        problems = []
        for rel in _chunk_files(chunk):
            path = self.out / rel
            expected = record.get("files", {}).get(rel)
            if not path.exists():
                problems.append(f"{rel} is missing")
            elif expected is not None:
                problem = _mismatch(rel, path.read_bytes(), expected)
                if problem:
                    problems.append(problem)
        return problems

    def damaged(self) -> dict[int, list[str]]:
        """``{chunk: problems}`` of every committed chunk that fails :meth:`verify`."""
        out = {}
        for c, rec in self.chunk_records().items():
            problems = self.verify(c, rec)
            if problems:
                out[c] = problems
        return out

    def uncommit(self, chunks: list[int]) -> None:
        """Drop chunks from ``progress.json`` (a resume recomputes them)."""
        self._check_writable()
        progress = {c: r for c, r in self._progress().items() if int(c) not in set(chunks)}
        atomic_write_json(self.out / "progress.json", {"format": 2, "chunks": progress}, indent=None)

    # ------------------------------------------------------------------ chunks
    def write_chunk(self, chunk: int, sample_rows: list[dict], unit_rows: list[dict], tensors: dict[str, Any],
                    env: str | None = None) -> None:
        """Write one chunk's rows and tensors, then commit it with its files' sizes and checksums."""
        self._check_writable()
        import io

        import pandas as pd
        from safetensors.torch import save as save_tensors

        blobs = []
        for rows in (sample_rows, unit_rows):
            buf = io.BytesIO()
            pd.DataFrame(rows).to_parquet(buf, index=False)
            blobs.append(buf.getvalue())
        blobs.append(save_tensors({k: v.contiguous() for k, v in tensors.items()}) if tensors else b"")
        files = {}
        for rel, data in zip(_chunk_files(chunk), blobs):
            atomic_write_bytes(self.out / rel, data)
            files[rel] = {"size": len(data), "sha256": _digest(data)}
        progress = self._progress()
        progress[str(chunk)] = {"files": files, "env": env}
        atomic_write_json(self.out / "progress.json", {"format": 2, "chunks": progress}, indent=None)

    def _read_committed(self, rel_of: int) -> list[tuple[int, bytes]]:
        """The bytes of one file kind (index into the chunk's files) of every committed chunk, verified."""
        out = []
        for c, rec in self.chunk_records().items():
            rel = _chunk_files(c)[rel_of]
            path = self.out / rel
            if not path.exists():
                raise SweepError(f"{str(path)!r} of committed chunk {c} is missing; resume the sweep to recompute it")
            data = path.read_bytes()
            problem = _mismatch(rel, data, rec.get("files", {}).get(rel))
            if problem:
                raise SweepError(f"{str(path)!r} of committed chunk {c} was truncated or changed after it was "
                                 f"committed ({problem}); resume the sweep (same command) to recompute it")
            out.append((c, data))
        return out

    def table(self, name: str) -> Any:
        """The committed rows of ``"samples"`` or ``"units"`` as one DataFrame, in work order.

        Raises:
            SweepError: a committed file is missing or differs from what was committed (names the file).
        """
        import io

        import pandas as pd

        frames = []
        for c, data in self._read_committed(("samples", "units").index(name)):
            try:
                frame = pd.read_parquet(io.BytesIO(data))
            except Exception as exc:  # pyarrow raises several types for a bad file
                raise SweepError(f"{name}/part-{c:05d}.parquet in {str(self.out)!r} is not readable: {exc}") from exc
            if len(frame):
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def tensors(self, key_prefix: str = "", key_suffix: str = "") -> dict[str, Any]:
        """Committed tensors whose key starts with ``key_prefix`` and ends with ``key_suffix`` (default: all)."""
        from safetensors.torch import load as load_tensors

        out: dict[str, Any] = {}
        for _, data in self._read_committed(2):
            if not data:  # a chunk without tensors
                continue
            for key, value in load_tensors(data).items():
                if key.startswith(key_prefix) and key.endswith(key_suffix):
                    out[key] = value
        return out


def load_sweep(out: str | os.PathLike) -> tuple[Any, Any, dict[str, Any]]:
    """``(samples, units, manifest)`` of a sweep folder (committed, verified chunks only).

    Raises:
        SweepError: ``out`` holds no sweep, or a committed file is damaged.
    """
    store = SweepStore(out)
    manifest = store.manifest()
    if manifest is None:
        what = "an emergence sweep without its manifest.json" if is_own_dir(out, "sweep") else "no sweep"
        raise SweepError(f"{str(out)!r} holds {what} (no manifest.json)")
    return store.table("samples"), store.table("units"), manifest

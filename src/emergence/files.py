"""Safe file output: atomic writes under temporary names only this toolkit uses, and output folders it may claim.

Rules every writer of the toolkit follows:

* a file is written under a temporary name ``.<name>.<random>.emergence-tmp`` in the same folder, flushed, fsynced and
  renamed over its final name (:func:`atomic_write_bytes`); a kill at any moment leaves either the old or the new file,
  plus at most a temporary file that :func:`remove_own_temporaries` recognises by its suffix;
* an output folder is claimed with :func:`claim_output_dir`: a new or empty folder, or one that holds a marker file
  ``.emergence.json`` of the same kind (written by this toolkit). Anything else — a folder with the user's notes, a
  file — is refused with an :class:`OutputDirError`; nothing the toolkit did not write is ever deleted or replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import EmergenceError

__all__ = [
    "OutputDirError",
    "TMP_SUFFIX",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "check_output_dir",
    "check_output_file",
    "claim_output_dir",
    "is_own_dir",
    "mark_output_dir",
    "output_lock",
    "remove_own_temporaries",
    "write_result_json",
]

TMP_SUFFIX = ".emergence-tmp"
MARKER = ".emergence.json"
LOCK = ".lock"


class OutputDirError(EmergenceError):
    """An output path cannot be used without overwriting or deleting something the toolkit did not write."""


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Raises:
        OutputDirError: the folder is not writable or the disk is full (names the path).
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputDirError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """:func:`atomic_write_bytes` of ``obj`` as JSON (non-JSON values written with ``str``)."""
    return atomic_write_bytes(path, json.dumps(obj, indent=indent, default=str, ensure_ascii=False).encode("utf-8"))


def remove_own_temporaries(folders: Iterable[str | os.PathLike]) -> int:
    """Delete this toolkit's temporary files (``*.emergence-tmp``) directly inside ``folders`` (not recursive).

    Returns:
        the number of files removed.
    """
    n = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.name.endswith(TMP_SUFFIX) and f.name.startswith(".") and f.is_file():
                f.unlink(missing_ok=True)
                n += 1
    return n


def _marker_kind(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def is_own_dir(folder: str | os.PathLike, kind: str) -> bool:
    """Whether ``folder`` carries this toolkit's marker of ``kind``."""
    return _marker_kind(Path(folder)) == kind


def _json_keys(path: Path, *keys: str) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in keys)


#: the PNG ``Software`` text of every figure the toolkit writes (:func:`emergence.plotting.save_figure`)
SOFTWARE = "emergence"


def _own_png(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.format == "PNG" and str(im.info.get("Software", "")).startswith(SOFTWARE)
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def _own_html(path: Path) -> bool:
    """A page the toolkit wrote: its ``<meta name="generator">`` names emergence (in the first 2 KB)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048).decode("utf-8", "replace")
    except OSError:
        return False
    return f'<meta name="generator" content="{SOFTWARE} ' in head


def check_output_file(path: str | os.PathLike, keys: Sequence[str] | None = None) -> Path:
    """Refuse an output file path that would replace a file this toolkit did not write; returns it as a Path.

    A path may be new, or a file the toolkit wrote: a PNG whose ``Software`` text names emergence, an HTML page whose
    ``<meta name="generator">`` does, or a JSON object
    holding every one of ``keys`` (an earlier output of the same command). With ``keys=None`` (the check made before
    the work, when the output's keys are not known yet) any JSON object passes, and the check with the keys is made
    again when writing (:func:`write_result_json`).

    Raises:
        OutputDirError: the path is a folder, a dangling symbolic link, or a file the toolkit did not write.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise OutputDirError(f"{path} is a dangling symbolic link; give a path to a new file, or remove the link")
    if path.is_dir():
        raise OutputDirError(f"{path} is a folder; give the path of a file to write")
    if not path.exists():
        return path
    if path.suffix.lower() == ".png":
        own = _own_png(path)
    elif path.suffix.lower() in (".html", ".htm"):
        own = _own_html(path)
    else:
        own = _json_keys(path) if keys is None else bool(keys) and _json_keys(path, *keys)
    if not own:
        raise OutputDirError(f"{path} exists and was not written by emergence (as the output of this command); it "
                             "is left untouched: choose a new path, or remove the file yourself")
    return path


def write_result_json(path: str | os.PathLike, obj: dict[str, Any]) -> Path:
    """Write a command's JSON result atomically (parent folders created), never replacing a file the toolkit did
    not write (:func:`check_output_file` with the result's keys)."""
    path = check_output_file(path, list(obj))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, obj)


def _legacy_output(path: Path, kind: str) -> bool:
    """Whether ``path`` is an output of ``kind`` written by an older emergence (before markers): its files must
    carry the toolkit's own keys, not just its file names (a user's ``table.csv`` is never adopted)."""
    run = lambda folder: _json_keys(folder / "run.json", "format_version", "layout", "tokens")  # noqa: E731
    if kind == "run":
        return run(path)
    if kind == "analysis":
        return run(path / "run") and _json_keys(path / "summary.json", "oracle_iou", "unit_kind")
    if kind == "demo":
        return run(path / "run") and (path / "summary.txt").is_file()
    if kind == "sweep":
        return _json_keys(path / "manifest.json", "options", "items", "model_id")
    if kind == "organism":
        return _json_keys(path / "training_args.json", "world_seed", "steps") and (path / "config.json").is_file()
    return False


def check_output_dir(path: str | os.PathLike, kind: str) -> Path:
    """Refuse ``path`` as an output folder of ``kind`` unless it is missing (then created, empty), empty, marked as
    ``kind``, or an output of ``kind`` that an older emergence wrote without a marker. Writes no file.

    Raises:
        OutputDirError: ``path`` is a file or a dangling link, holds files this toolkit did not write, or belongs to
            another kind.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise OutputDirError(f"{str(path)!r} is a dangling symbolic link (to {os.readlink(path)!r}); create its "
                             "target folder, remove the link, or choose another output folder")
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{str(path)!r} is a file, not a folder; choose another output folder")
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputDirError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from exc
        return path
    try:  # listed BEFORE the marker is read: another process claiming the folder meanwhile writes its marker
        entries = sorted(p.name for p in path.iterdir() if not _own_name(p.name))  # first, then its own files
    except OSError as exc:
        raise OutputDirError(f"cannot list {str(path)!r}: {exc.strerror or exc}") from exc
    found = _marker_kind(path)
    if found is not None and found != kind:
        raise OutputDirError(f"{str(path)!r} holds an emergence {found} output, not a {kind}; choose another output "
                             "folder")
    if found is None:
        if entries and not _legacy_output(path, kind):
            shown = ", ".join(repr(e) for e in entries[:3]) + (" ..." if len(entries) > 3 else "")
            raise OutputDirError(
                f"{str(path)!r} is not empty ({shown}) and was not written by emergence; refusing to write into it so "
                "that nothing of yours is overwritten. Choose a new or empty folder."
            )
    return path


def _own_name(name: str) -> bool:
    return name in (MARKER, LOCK) or (name.startswith(".") and name.endswith(TMP_SUFFIX))


def mark_output_dir(path: str | os.PathLike, kind: str) -> None:
    """Write the marker that says ``path`` is an emergence output of ``kind`` (once)."""
    path = Path(path)
    if _marker_kind(path) != kind:
        from ._version import __version__

        atomic_write_json(path / MARKER, {"kind": kind, "emergence": __version__})


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``path``'s lock file (``flock``, created with the folder if needed) while inside, so two processes
    never write one output folder at once (a sweep's store takes the same lock).

    Raises:
        OutputDirError: another process holds the lock.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        import warnings

        warnings.warn(f"no file locking on this platform: do not run two emergence commands into {str(path)!r}",
                      stacklevel=3)
        yield path
        return
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputDirError(f"another emergence process is writing {str(path)!r}; wait for it to finish, or "
                                 "use another --out") from None
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def claim_output_dir(path: str | os.PathLike, kind: str) -> Path:
    """:func:`check_output_dir`, then :func:`mark_output_dir`: the folder is ours from now on.

    Raises:
        OutputDirError: as :func:`check_output_dir`.
    """
    path = check_output_dir(path, kind)
    mark_output_dir(path, kind)
    return path

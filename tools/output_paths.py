"""Where a command may write, checked before it starts: no traceback, and nothing damaged.

* :func:`output_folder`: a folder the command fills. It must not be an existing file, nor the input or inside it
  (or hold it). A non-empty folder is refused unless this command made it (its marker file is there); then the
  command's earlier output is removed first, so no old file is left beside the new ones.
* :func:`output_file`: a file the command writes. It must not be a folder, nor one of the inputs, and no file may
  stand where one of its folders would be. Nothing is made before the command writes.

Both raise :class:`OutputPathError` (a ``ValueError``) with one sentence that says what to do instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path


class OutputPathError(ValueError):
    """An output path the command must not write to."""


def _overlaps(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> Path | None:
    resolved = out.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            return Path(given)
    return None


def output_folder(out: str | os.PathLike[str], *, marker: str, command: str,
                  inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Make ``out`` ready for ``command``'s output (see the module docstring) and mark it as the command's."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"--out {folder} is a file, not a folder; choose a folder")
    clash = _overlaps(folder, inputs)
    if clash is not None:
        raise OutputPathError(f"--out {folder} overlaps the input {clash}: the input would be read and written at "
                              "once; choose a folder outside it")
    made_here = (folder / marker).is_file()
    if folder.is_dir() and any(folder.iterdir()):
        if not made_here:
            raise OutputPathError(f"--out {folder} is not empty and was not made by {command}; choose another "
                                  "folder or empty it")
        for entry in folder.iterdir():  # the command's own earlier output: replaced, not mixed with the new one
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot make the folder {folder}: {exc.strerror or exc}") from None
    (folder / marker).write_text(f"written by {command}; its next run over this folder replaces what is here\n",
                                 encoding="utf-8")
    return folder


def output_file(out: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check that ``out`` can be written as a file (see the module docstring)."""
    target = Path(out)
    if target.is_dir():
        raise OutputPathError(f"--out {target} is a folder; give a file name, e.g. {target / 'out.json'}")
    for given in inputs:
        if target.resolve() == Path(given).resolve():
            raise OutputPathError(f"--out {target} is the input; choose another file")
    parent = target.parent
    blocking = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputPathError(f"cannot write {target}: {blocking} is a file, not a folder")
    return target  # its folders are made when it is written, so a check that fails later leaves nothing behind

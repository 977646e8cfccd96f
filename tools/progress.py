"""Progress bars for the long local runs (tqdm on standard error), fed by the ``progress(done, total)`` callbacks
of :func:`tools.generate.generate_corpus` and :func:`detection.logs.convert.convert_to_parquet`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ProgressCallback", "progress_bar"]

ProgressCallback = Callable[[int, int], None]


@contextmanager
def progress_bar(
    label: str, unit: str, *, scale: bool = False, always: bool = False
) -> Iterator[ProgressCallback]:
    """A ``progress(done, total)`` callback drawing a bar on standard error for the block (``scale``: counts as
    1.2M). The bar is off when standard error is not a terminal (logs and pipes stay clean) unless ``always``."""
    from tqdm import tqdm

    with tqdm(desc=label, unit=unit, unit_scale=scale, file=sys.stderr, disable=None if not always else False,
              dynamic_ncols=True) as bar:

        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield update

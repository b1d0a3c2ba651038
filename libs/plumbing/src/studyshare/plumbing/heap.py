"""The garbage collector of an API process, set once it has started (the `api` command).

CPython's cyclic collector walks every container object of the generations it collects. An API
holds a few hundred thousand of them after start-up (modules, routes, pydantic schemas), and the
study store's access cache adds more, so each full collection costs milliseconds; with Python's
default thresholds a request that decodes thousands of documents triggers several. Measured on
the study store's `GET /api/studies` as a recipient of 10,000 shares: about 1.5 s of collection
during 4 to 5 s of requests. Freezing what start-up made takes it out of every later
collection, and a higher third threshold makes full collections rarer. Young objects are
collected as often as before, and most of a request's garbage is freed by reference counting.
"""

from __future__ import annotations

import gc


def settle(full_threshold: int) -> None:
    """Collect once, freeze what is left (start-up's objects), then collect the whole heap
    only every `full_threshold` collections of the middle generation (the interpreter's own
    first two thresholds kept: they differ between Python versions)."""
    young, middle, _ = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle, full_threshold)

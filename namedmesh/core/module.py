"""``Module``: a ``tf.Module`` with untracked bookkeeping attributes.

A ``tf.Module`` tracks every attribute it is given: lists and dicts become tracked
wrappers and checkpoint dependencies (and a saved list may not be popped from).  The
attributes a subclass names in ``_UNTRACKED`` (configuration, caches, counters) are
set as plain attributes instead; everything else is tracked as ``tf.Module`` does.
"""

import tensorflow as tf


class Module(tf.Module):
    """``tf.Module`` whose attributes named in ``_UNTRACKED`` are not tracked."""

    _UNTRACKED = frozenset()

    def __setattr__(self, name, value):
        if name in self._UNTRACKED:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


__all__ = ["Module"]

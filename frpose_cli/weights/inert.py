"""Inert stand-ins for the bookkeeping classes that published checkpoints pickle beside the weights.

Training frameworks save more than tensors: mmengine 0.1.x (the zoo's September 2022 files)
keeps its ``message_hub`` with ``mmengine.logging.history_buffer.HistoryBuffer`` instances (a
``max_length`` and two numpy arrays), mmcv/mmengine configs are ``ConfigDict`` (an ``addict``
dict), old training scripts store their ``argparse.Namespace``.  These are plain data held in a
class instance; frpose needs none of them, but refusing them refuses the file.

So each name in :data:`INERT_GLOBALS` (an explicit allow-list, nothing else) gets a placeholder
class that torch's weights-only unpickler may instantiate: it defines no behaviour, runs no code
of the original class (which need not be installed), and only stores what the pickle hands it
(``__new__``/``__init__`` arguments, ``__setstate__`` state).  Every other global stays refused.

Dict-like classes (``ConfigDict``, ``addict.Dict``) become an ``OrderedDict``: torch's unpickler
fills only exact ``dict``/``OrderedDict``/``Counter`` objects with items, and the items are what
such a class holds.
"""
from __future__ import annotations

from collections import OrderedDict


class InertObject:
    """What was an instance of :attr:`original` in the file, as data (``vars(obj)``)."""
    original = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        if args or kwargs:
            obj.__dict__["pickled_args"] = (args, kwargs)
        return obj

    def __init__(self, *args, **kwargs):   # REDUCE calls cls(*args): keep them (__new__), do nothing
        pass

    def __setstate__(self, state):
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and (state[1] is None or isinstance(state[1], dict)):
            state, slots = state
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif state is not None:
            self.__dict__["pickled_state"] = state
        self.__dict__.update(slots or {})

    def __repr__(self) -> str:
        return f"<inert {self.original}: {', '.join(vars(self))}>"


class _InertDict:
    """Base of the dict-like placeholders: instantiating one gives a plain OrderedDict."""
    original = "?"

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


# The allow-list: (global name as pickled, dict-like?).  Add a name only for a class whose
# instances are plain data; the placeholder never calls the original.
_ALLOW = (
    ("mmengine.logging.history_buffer.HistoryBuffer", False),   # mmengine message_hub scalars
    ("mmengine.config.config.ConfigDict", True),
    ("mmcv.utils.config.ConfigDict", True),
    ("mmcv.Config", False),
    ("addict.addict.Dict", True),
    ("argparse.Namespace", False),                             # training scripts' args
)


def _placeholder(name: str, dict_like: bool) -> type:
    base = _InertDict if dict_like else InertObject
    short = name.rsplit(".", 1)[1]
    return type(f"Inert{short}", (base,), {"original": name, "__module__": __name__,
                                          "__doc__": f"Inert placeholder for {name}"})


INERT_GLOBALS = {name: _placeholder(name, dict_like) for name, dict_like in _ALLOW}


def safe_globals_entries() -> list:
    """``(placeholder class, original name)`` pairs for ``torch.serialization.safe_globals``."""
    return [(cls, name) for name, cls in INERT_GLOBALS.items()]


def is_inert(obj) -> bool:
    return isinstance(obj, InertObject)

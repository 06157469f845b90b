"""Write pickles that name any global by module and name, without that module existing here.

Tests use it to make hostile files (``os.system`` called by a pickle, an NVIDIA persistence record whose
embedded source would run a command) and files of formats whose code we do not have
(``dnnlib.tflib.network.Network``). ``Global("os", "system")`` pickles as that global;
``Call(func, args, state)`` as ``func(*args)`` (then ``__setstate__(state)`` when given);
``New(cls, args, state)`` as ``cls.__new__(cls, *args)`` then state, as pickle writes ordinary objects.
Everything else pickles as usual (tensors, numpy arrays, dicts).
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass
class Call:
    func: Any
    args: tuple = ()
    state: Any = None


@dataclass
class New:
    cls: Any
    args: tuple = ()
    state: Any = None


class _CraftPickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global_ref(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    def _save_call(self, obj: Call) -> None:
        self.save(obj.func)
        self.save(tuple(obj.args))
        self.write(pickle.REDUCE)
        if obj.state is not None:
            self.save(obj.state)
            self.write(pickle.BUILD)

    def _save_new(self, obj: New) -> None:
        self.save(obj.cls)
        self.save(tuple(obj.args))
        self.write(pickle.NEWOBJ)
        if obj.state is not None:
            self.save(obj.state)
            self.write(pickle.BUILD)

    dispatch[Global] = _save_global_ref
    dispatch[Call] = _save_call
    dispatch[New] = _save_new


def dumps(obj: Any, protocol: int = 4) -> bytes:
    buffer = io.BytesIO()
    _CraftPickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


PERSISTENCE = Global("torch_utils.persistence", "_reconstruct_persistent_obj")


def persistent(source: str, class_name: str, state: dict) -> Call:
    """What ``torch_utils.persistence`` writes for one object: a call of its reconstruct hook with the
    embedded module text, the class name and the object's ``__dict__``."""
    meta = dict(type="class", version=6, module_src=source, class_name=class_name, state=state)
    return Call(PERSISTENCE, (meta,))


def rewrite_records(record, source_edit=lambda text: text) -> Call:
    """A :class:`latentnav.nvidia_pickle.PersistentObject` tree back into persistence calls, each embedded
    source passed through ``source_edit`` (a tampered copy of a real pickle)."""
    from latentnav.nvidia_pickle import PersistentObject

    def convert(value):
        if isinstance(value, PersistentObject):
            state = convert(value.state)
            return persistent(source_edit(value.source), value.class_name, state)
        if isinstance(value, dict):  # OrderedDicts stay ordered dicts; EasyDicts become dicts
            kind = OrderedDict if isinstance(value, OrderedDict) else dict
            return kind((k, convert(v)) for k, v in value.items())
        return value

    return convert(record)

"""NVIDIA network pickles (StyleGAN2-ADA-PyTorch, StyleGAN3) read as data: nothing in them runs.

What such a file is. ``pickle.dump({"G": G, "D": D, "G_ema": G_ema, "augment_pipe": ...,
"training_set_kwargs": {...}})`` of networks whose classes are decorated with
``torch_utils.persistence.persistent_class``. Each network object pickles as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta`` holds the full text of the
Python module that defined the class (``module_src``), the class name, and the object's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). NVIDIA's loader *executes*
``module_src``; tensors arrive through ``torch.storage._load_from_bytes``, a nested unrestricted
``torch.load`` of each storage.

What this reader does instead. :class:`NetworkUnpickler` resolves only the globals in
:data:`ALLOWED_GLOBALS`; every other one is refused, in one line naming it, before anything is called.
The persistence hook becomes :func:`_record_persistent`: it keeps the class name, the source's
normalised sha256 (:func:`normalised_source_sha256` parses the text with :mod:`ast`, which runs
nothing) and the state, as a :class:`PersistentObject`. Nested storages load with
``torch.load(weights_only=True)``. Every other allowed global is a checked stand-in: tensors are views
that fit their storage (no hooks, no expanded views), ``torch.Tensor`` / ``numpy.ndarray`` are names
only, numpy dtypes are plain numbers (no objects, fields or pickled flags: arrays are rebuilt from
their raw bytes), ``EasyDict`` is a dict, and sets / bytes come through for pickle protocols 2 and 3
(Python 3.7, which ADA required, wrote protocol 3). Which globals real pickles use was read from
pickles made by the original code (``tests/latentnav/check_nvidia_pickle_original.py``); the
``dnnlib.tflib.network.Network`` record is for TensorFlow-era pickles (:mod:`latentnav.tf_pickle`).
The network *version* is recognised from the source hash against
:mod:`latentnav.known_network_sources`, a table of every revision NVIDIA published (made by
``tests/latentnav/make_known_sources.py``); the network ports in ``latentnav.generators`` build the
network from the records, never from the embedded code.

The embedded source of a tampered file (say one calling ``os.system`` at module level) is therefore
never run: it only has an unknown hash, and :func:`require_version` refuses it in one line unless the
user names the version, in which case only the weights and ``init_kwargs`` are used. A tampered
global anywhere in the pickle, the nested storage payloads included, is refused while reading.

Official pickles may embed a revision of NVIDIA's code that was never published (the pretrained
networks were exported from NVIDIA's internal tree): name it with ``version=`` (see
:func:`read_network_pickle`) when you know which code made the file.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from latentnav.errors import DataFormatError

VERSIONS = ("stylegan2-ada", "stylegan3-stylegan2", "stylegan3")
NETWORK_KEYS = ("G_ema", "G", "D")
_MAX_SOURCE_CHARS = 4 << 20  # a network module is ~40 KB; longer text is hashed raw, never parsed


# ---------------------------------------------------------------------------------------------------------
# The normalised source hash


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                del body[0]


def _canonical(node: Any, out: list) -> None:
    """A text form of the tree that does not depend on the Python version's ``ast.dump`` defaults:
    node types and fields in order, empty fields (None, []) and ``kind`` / ``type_comment`` left out."""
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for name in node._fields:
            if name in ("kind", "type_comment"):
                continue
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            out.append(name + "=")
            _canonical(value, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _canonical(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(type(node).__name__ + ":" + repr(node))


def normalised_source_sha256(source: str) -> str:
    """sha256 of the module's syntax tree without docstrings: comments, blank lines, layout, a byte
    order mark and docstrings do not change it. Parsing runs none of the code. Text that does not
    parse (or is implausibly long or deep) gets the sha256 of its raw UTF-8 bytes instead."""
    text = source.lstrip("\ufeff")
    if len(text) <= _MAX_SOURCE_CHARS:
        try:
            tree = ast.parse(text)
            _strip_docstrings(tree)
            out: list = []
            _canonical(tree, out)
            return hashlib.sha256("".join(out).encode("utf-8")).hexdigest()
        except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
            pass
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def _known_sources() -> dict:
    from latentnav.known_network_sources import KNOWN_SOURCES

    return KNOWN_SOURCES


def recognise_source(source_sha256: str) -> Optional[dict]:
    """The table entry (``version``, ``path``, ``commits``) of a published revision, or None."""
    return _known_sources().get(source_sha256)


# ---------------------------------------------------------------------------------------------------------
# Records


class EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def plain(value: Any) -> Any:
    """Plain Python data: dict subclasses -> dict, tuples / lists kept, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(repr=False, eq=False)
class PersistentObject:
    """One pickled persistent network object, as data.

    ``module_name``: persistence does not pickle the module's name, only its text; for a recognised
    source this is the file's module in NVIDIA's tree (``training.networks_stylegan2``), else
    ``"<embedded>"``. ``version``: see :data:`VERSIONS`, None for a source not in the table (or the
    version the user named, then ``version_given`` is True). ``state``: the object's pickled
    ``__dict__`` (``_parameters``, ``_buffers``, ``_modules`` whose children are PersistentObjects,
    plain attributes). ``source``: the embedded text, kept for diagnostics only -- never run.
    """

    class_name: str
    module_name: str
    source_sha256: str
    version: Optional[str]
    init_kwargs: dict
    state: dict
    init_args: tuple = ()
    source: str = ""
    persistence_version: Any = None
    version_given: bool = False
    known_commits: tuple = dataclass_field(default_factory=tuple)

    def __setstate__(self, state: Any) -> None:
        if self.__dict__.get("_sealed") or not isinstance(state, dict):
            raise _Malformed("a pickle that sets state on a persistent object after building it")
        self.__dict__.update(state)  # copy.deepcopy of a record

    def __repr__(self) -> str:
        return (f"PersistentObject({self.class_name}, version={self.version!r}, "
                f"source={self.source_sha256[:12]}, {len(self.state_dict())} tensors)")

    @property
    def parameters(self) -> dict:
        return self.state.get("_parameters") or {}

    @property
    def buffers(self) -> dict:
        return self.state.get("_buffers") or {}

    @property
    def children(self) -> dict:
        """Sub-networks by attribute name (None entries left out)."""
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if v is not None}

    def attribute(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the pickled object (``num_ws``, ``w_dim``, ...)."""
        return self.state.get(name, default)

    def child(self, dotted: str) -> "PersistentObject":
        obj = self
        for part in dotted.split("."):
            obj = obj.children[part]
        return obj

    def named_records(self, prefix: str = "") -> Iterator[tuple[str, "PersistentObject"]]:
        yield prefix.rstrip("."), self
        for name, child in self.children.items():
            if isinstance(child, PersistentObject):
                yield from child.named_records(prefix + name + ".")

    def state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """Flat, dotted names exactly as ``nn.Module.state_dict()`` of the original: parameters, then
        persistent buffers, then children, each in pickled order."""
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._collect("", out, 0)
        return out

    def _collect(self, prefix: str, out: dict, depth: int) -> None:
        if depth > 64:
            raise DataFormatError(f"{self.class_name}: sub-modules nested more than 64 deep at {prefix}")
        for name, value in self.parameters.items():
            if value is not None:
                out[prefix + name] = _as_tensor(value, prefix + name).detach()
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for name, value in self.buffers.items():
            if value is not None and name not in skip:
                out[prefix + name] = _as_tensor(value, prefix + name).detach()
        for name, child in self.children.items():
            if not isinstance(child, PersistentObject):
                raise DataFormatError(f"{self.class_name}: sub-module {prefix + name} is a {type(child).__name__}, "
                                      "not a recorded network module")
            child._collect(prefix + name + ".", out, depth + 1)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value)
    raise DataFormatError(f"tensor {name} is a {type(value).__name__}")


@dataclass(repr=False, eq=False)
class TFNetwork:
    """A ``dnnlib.tflib.network.Network`` of the TensorFlow era, as data (see :mod:`latentnav.tf_pickle`).
    ``build_module_src`` is kept as text only; it is never run."""

    name: str = ""
    version: int = 0
    static_kwargs: dict = dataclass_field(default_factory=dict)
    components: dict = dataclass_field(default_factory=dict)
    build_module_src: str = ""
    build_func_name: str = ""
    variables: list = dataclass_field(default_factory=list)
    extra: dict = dataclass_field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Malformed(f"a TensorFlow Network's state is a {type(state).__name__}, not a dict")
        state = _resolve(state)
        known = {"name", "version", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"}
        self.name = state.get("name", "")
        self.version = state.get("version", 0)
        self.static_kwargs = plain(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        self.build_module_src = state.get("build_module_src") or ""
        self.build_func_name = state.get("build_func_name") or ""
        self.variables = list(state.get("variables") or [])
        self.extra = {k: v for k, v in state.items() if k not in known}

    def __repr__(self) -> str:
        return f"TFNetwork({self.name!r}, {self.build_func_name!r}, {len(self.variables)} variables)"


class _Malformed(Exception):
    """Raised inside the unpickler for a structure no network pickle has; becomes one DataFormatError line."""


class _Refused(Exception):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# ---------------------------------------------------------------------------------------------------------
# The allowed globals: each a checked stand-in


def _record_persistent(meta: Any) -> PersistentObject:
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, runs nothing."""
    if not isinstance(meta, dict):
        raise _Malformed(f"a persistent object's meta is a {type(meta).__name__}")
    if meta.get("type") != "class":
        raise _Malformed(f"a persistent object of type {meta.get('type')!r} (expected 'class')")
    source, class_name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
    if not isinstance(source, str) or not isinstance(class_name, str) or not class_name.isidentifier():
        raise _Malformed("a persistent object without module source or class name")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise _Malformed(f"the state of {class_name} is a {type(state).__name__}")
    state = _resolve(state)
    digest = _hash_cached(source)
    entry = recognise_source(digest)
    kwargs = state.get("_init_kwargs") or {}
    args = state.get("_init_args") or ()
    record = PersistentObject(
        class_name=class_name,
        module_name=entry["path"][:-3].replace("/", ".") if entry else "<embedded>",
        source_sha256=digest,
        version=entry["version"] if entry else None,
        init_kwargs=plain(kwargs) if isinstance(kwargs, dict) else {},
        init_args=plain(tuple(args)) if isinstance(args, (tuple, list)) else (),
        state=dict(state),
        source=source,
        persistence_version=meta.get("version"),
        known_commits=tuple(entry["commits"]) if entry else (),
    )
    record.__dict__["_sealed"] = True  # a BUILD opcode after the call must not rewrite the record
    return record


_HASHES: dict = {}


def _hash_cached(source: str) -> str:
    digest = _HASHES.get(source)
    if digest is None:
        digest = normalised_source_sha256(source)
        if len(_HASHES) > 64:
            _HASHES.clear()
        _HASHES[source] = digest
    return digest


_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL|global) ([\w.]+)")


def _load_storage(data: Any):
    """Stands in for ``torch.storage._load_from_bytes``: the nested file loads weights-only."""
    if not isinstance(data, (bytes, bytearray)):
        raise _Malformed(f"a storage payload is a {type(data).__name__}, not bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _REFUSED_GLOBAL.search(str(e))
        raise _Refused(f"a nested storage payload calls {found.group(1) if found else 'a global outside tensors'}") from None
    except Exception as e:  # noqa: BLE001 - torch's readers raise many kinds on bad bytes
        raise _Malformed(f"a nested storage payload is unreadable ({type(e).__name__})") from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise _Malformed(f"a nested storage payload holds a {type(storage).__name__}, not a storage")
    return storage


def _int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list, torch.Size)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stands in for ``torch._utils._rebuild_tensor_v2`` with its arguments checked: a view that fits its
    storage, no more elements than the storage holds (no expanded views), no hooks."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise _Malformed(f"a tensor over a {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int) or not _int_tuple(size) or not _int_tuple(stride) or len(size) != len(stride) \
            or storage_offset < 0 or any(v < 0 for v in size) or any(v < 0 for v in stride):
        raise _Malformed("a tensor with a malformed offset, size or stride")
    if backward_hooks:
        raise _Malformed("a tensor with backward hooks")
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, bool) for k, v in metadata.items())):
        raise _Malformed("a tensor with malformed metadata")
    elements = storage._size() if isinstance(storage, torch.storage.TypedStorage) else storage.nbytes()
    if int(np.prod(size, dtype=np.float64)) > elements:
        raise _Malformed("a tensor with more elements than its storage")
    try:
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), False,
                                               OrderedDict(), metadata or None)
    except RuntimeError as e:
        raise _Malformed(f"a tensor that does not fit its storage ({str(e).splitlines()[0][:80]})") from None


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise _Malformed("a parameter over something other than a tensor")
    return torch.nn.Parameter(data, requires_grad=False)


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    if state:
        raise _Malformed("a parameter with extra state")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


class _TypeToken:
    """A class named by the pickle (``torch.Tensor``, ``numpy.ndarray``) as a name only: not callable, no
    state can be set on it."""

    __slots__ = ("cls",)

    def __init__(self, cls: type):
        self.cls = cls


def _rebuild_from_type(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter, _rebuild_parameter_with_state) \
            or not isinstance(new_type, _TypeToken) or new_type.cls not in (torch.Tensor, torch.nn.Parameter) \
            or not isinstance(args, tuple) or state:
        raise _Malformed("a tensor of an unexpected type or with extra state")
    result = func(*args)
    if new_type.cls is torch.nn.Parameter and not isinstance(result, torch.nn.Parameter):
        result = torch.nn.Parameter(result, requires_grad=False)
    return result


# numpy: the pickle gets stand-ins whose state is checked; the arrays are made from their raw bytes
# when the enclosing record is built (numpy's own __setstate__ would accept any dtype flags).
_NUMERIC_DTYPE = re.compile(r"[<>|=]?(?:[fiuc]\d{1,2}|b1|\?)")


class _DType:
    __slots__ = ("name", "order", "_dtype")

    def __init__(self, name=None, align=False, copy=False):
        if not isinstance(name, str) or not _NUMERIC_DTYPE.fullmatch(name):
            raise _Malformed(f"a numpy dtype {name!r} (only plain numbers are read)")
        self.name, self.order, self._dtype = name, None, None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "=") \
                or any(x is not None for x in state[2:5] if len(state) >= 5):
            raise _Malformed("a numpy dtype with fields or sub-arrays")
        self.order = state[1]

    @property
    def dtype(self) -> np.dtype:
        if self._dtype is None:
            dtype = np.dtype(self.name)
            if self.order in ("<", ">"):
                dtype = dtype.newbyteorder(self.order)
            self._dtype = dtype
        return self._dtype


class _Array:
    """A numpy array while unpickling; :func:`_resolve` replaces it by the array."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _Malformed("a malformed numpy array")
        _, shape, dtype, fortran, raw = state
        if not _int_tuple(shape) or not isinstance(dtype, _DType) or not isinstance(raw, (bytes, bytearray)):
            raise _Malformed("a numpy array of Python objects or malformed")
        count = int(np.prod(shape, dtype=np.float64))
        if count * dtype.dtype.itemsize != len(raw):
            raise _Malformed("a numpy array whose data does not match its shape")
        flat = np.frombuffer(bytes(raw), dtype=dtype.dtype, count=count)
        self.array = flat.reshape(tuple(shape), order="F" if fortran else "C").copy()


def _numpy_reconstruct(subtype, shape, kind):
    if not (isinstance(subtype, _TypeToken) and subtype.cls is np.ndarray):
        raise _Malformed("a numpy array of an unexpected subtype")
    return _Array()


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DType) or not isinstance(data, (bytes, bytearray)) or len(data) != dtype.dtype.itemsize:
        raise _Malformed("a malformed numpy scalar")
    return np.frombuffer(bytes(data), dtype=dtype.dtype, count=1)[0]


def _resolve(value: Any, depth: int = 0) -> Any:
    """Containers with their numpy stand-ins replaced by the arrays (in place where mutable)."""
    if depth > 200:
        raise _Malformed("data nested too deeply")
    if isinstance(value, _Array):
        if value.array is None:
            raise _Malformed("a numpy array without data")
        return value.array
    if isinstance(value, (_DType, _TypeToken)):
        raise _Malformed("a bare numpy dtype or type")
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _resolve(value[k], depth + 1)
        return value
    if isinstance(value, list):
        value[:] = [_resolve(v, depth + 1) for v in value]
        return value
    if isinstance(value, tuple):
        return tuple(_resolve(v, depth + 1) for v in value)
    return value


def _latin1_bytes(text, encoding="latin1"):
    """Stands in for ``_codecs.encode``, which pickle protocol 2 uses for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Malformed("a malformed bytes value")
    return text.encode("latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TypeToken(torch.Tensor),
    ("torch.nn.parameter", "Parameter"): _TypeToken(torch.nn.Parameter),
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy", "dtype"): _DType,
    ("numpy", "ndarray"): _TypeToken(np.ndarray),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("builtins", "set"): set,  # pickle protocol <= 3 writes sets as a call (Python 3.7's default was 3)
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_bytes,  # protocol 2's bytes
    ("dnnlib.tflib.network", "Network"): TFNetwork,  # TensorFlow-era pickles: a record, see tf_pickle
}


class NetworkUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` resolving only :data:`ALLOWED_GLOBALS` (each a checked stand-in)."""

    def __init__(self, file, allowed: Optional[dict] = None):
        super().__init__(file)
        self._allowed = ALLOWED_GLOBALS if allowed is None else allowed

    def find_class(self, module: str, name: str):
        target = self._allowed.get((module, name))
        if target is None:
            if module.startswith("torch.nn.modules."):  # NVIDIA's networks pickle no plain torch module
                raise _Refused(f"it holds a plain torch module ({module}.{name}), which no StyleGAN2-ADA / "
                               "StyleGAN3 network pickles; it is not read")
            raise _Refused(f"it calls {module}.{name}")
        return target

    def persistent_load(self, pid):
        raise _Malformed("a persistent id (this is a torch.save file, not a network pickle)")


# ---------------------------------------------------------------------------------------------------------
# Reading files


def load_restricted(path: str | os.PathLike, allowed: Optional[dict] = None) -> Any:
    """Unpickle ``path`` through :class:`NetworkUnpickler`; every failure is one DataFormatError line
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:2] == b"PK":
                raise DataFormatError(f"{path}: a zip file (a torch.save checkpoint?), not a network pickle")
            if not head or head[0] != 0x80:
                raise DataFormatError(f"{path}: not a pickle file (it does not start with a pickle protocol mark)")
            f.seek(0)
            return _resolve(NetworkUnpickler(f, allowed).load())
    except DataFormatError:
        raise
    except _Refused as e:
        raise DataFormatError(f"{path}: refused, {e.what} (a tampered or foreign file?); nothing in it was run") from None
    except _Malformed as e:
        raise DataFormatError(f"{path}: not a network pickle: {e}") from None
    except EOFError:
        raise DataFormatError(f"{path}: truncated pickle (the file ends before the data does)") from None
    except pickle.UnpicklingError as e:
        message = str(e).splitlines()[0][:100] if str(e) else "unreadable"
        if "truncated" in message or "ran out" in message.lower():
            raise DataFormatError(f"{path}: truncated pickle (the file ends before the data does)") from None
        raise DataFormatError(f"{path}: not a readable pickle ({message})") from None
    except (RecursionError, MemoryError) as e:
        raise DataFormatError(f"{path}: not a network pickle (nested too deeply or too large: {type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - the C unpickler raises many kinds on bad bytes
        first = (str(e).strip().splitlines() or [""])[0][:100]
        raise DataFormatError(f"{path}: not a readable network pickle ({type(e).__name__}{': ' + first if first else ''})") from None


def sniff_network_pickle(path: str | os.PathLike) -> Optional[str]:
    """``"persistence"`` (ADA / StyleGAN3), ``"tensorflow"`` (a TF-era StyleGAN2 pickle) or None, from the
    globals the pickle names; decodes opcodes only (nothing is built or called), reads at most ~64 KB."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if not head or head[0] != 0x80:
        return None
    if b"torch_utils.persistence" in head and b"_reconstruct_persistent_obj" in head:
        return "persistence"
    if b"dnnlib.tflib.network" in head:
        return "tensorflow"
    return None


def _version_hint(field: str) -> str:
    return (f"if you know which code made it, name the version ({field} option network_version="
            f"{'|'.join(VERSIONS)}); only its weights and init_kwargs are used, its code never runs")


def read_network_pickle(path: str | os.PathLike, *, field: str = "generator", version: Optional[str] = None) -> dict:
    """The top-level dict of an ADA / StyleGAN3 network pickle, its networks as :class:`PersistentObject`.

    ``{"G_ema": PersistentObject, "G": ..., "D": ..., "augment_pipe": ..., "training_set_kwargs": {...}}``
    (whatever the file holds; at least one of G_ema / G / D). ``version``: the user's word for which
    NVIDIA code made the networks, for a file whose embedded source is not a published revision;
    it is set on every record whose source equals a top-level network's. ``field`` names the user's
    setting in messages. Anything else -- a truncated file, another object, a refused global -- is one
    DataFormatError line naming the file.
    """
    if version is not None and version not in VERSIONS:
        raise DataFormatError(f"{field}: network_version {version!r} is not one of {', '.join(VERSIONS)}")
    blob = load_restricted(path)
    if isinstance(blob, tuple) and blob and all(isinstance(x, TFNetwork) for x in blob):
        raise DataFormatError(f"{path}: a TensorFlow-era StyleGAN2 pickle (G, D, Gs); it is read by "
                              "latentnav.tf_pickle, not as a PyTorch network pickle")
    if not isinstance(blob, dict):
        raise DataFormatError(f"{path}: not a network pickle (it holds a {type(blob).__name__}, expected a dict "
                              "with G_ema / G / D networks)")
    nets = [k for k in NETWORK_KEYS if isinstance(blob.get(k), PersistentObject)]
    if not nets:
        keys = ", ".join(sorted(map(str, blob))[:6]) or "none"
        raise DataFormatError(f"{path}: not a network pickle (a dict without G_ema / G / D networks; keys: {keys})")
    out = {k: (plain(v) if isinstance(v, dict) and not isinstance(v, PersistentObject) else v) for k, v in blob.items()}
    if version is not None:
        sources = {blob[k].source_sha256 for k in nets}
        for k in nets:
            for _, record in blob[k].named_records():
                if record.source_sha256 in sources and record.version != version:
                    record.version, record.version_given = version, True
    return out


def require_version(obj: PersistentObject, path: str | os.PathLike, *, field: str = "generator",
                    version: Optional[str] = None) -> str:
    """The network's version (``version`` when the user named one), or one DataFormatError line: an
    unknown network source, its sha256 prefix and class name, and how to name the version."""
    if version is not None:
        if version not in VERSIONS:
            raise DataFormatError(f"{field}: network_version {version!r} is not one of {', '.join(VERSIONS)}")
        return version
    if obj.version is not None:
        return obj.version
    raise DataFormatError(
        f"{path}: unknown network source for {obj.class_name} (normalised source sha256 {obj.source_sha256[:16]}; "
        f"not a published StyleGAN2-ADA / StyleGAN3 revision); " + _version_hint(field))


def generator_record(blob: Any, where: Any = "network pickle") -> Any:
    """The generator of a network pickle's top-level dict: ``G_ema`` (the averaged weights every release
    publishes), else ``G``; anything else (a record itself, a ``(version, init_kwargs, state)`` tuple) comes back
    as it is. A dict with neither is one line naming ``where``."""
    if not isinstance(blob, dict) or "init_kwargs" in blob:
        return blob
    for key in ("G_ema", "G"):
        if key in blob:
            return blob[key]
    keys = ", ".join(sorted(map(str, blob))[:6]) or "nothing"
    raise DataFormatError(f"{where}: a pickle without a generator (keys: {keys}); expected G_ema or G")

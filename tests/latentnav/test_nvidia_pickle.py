"""NVIDIA network pickles read as data (``latentnav.nvidia_pickle``): the ADA / StyleGAN3 fixtures (made
by the original code, see ``tests/generators/make_stylegan2_ada_golden.py`` and
``make_stylegan3_golden.py``) read as records equal to what the original pickled; tampered files are
refused or never run (each test checks that its command did not run, and a control shows the same
bytes do run it when unpickled the ordinary way); bad files are one line each."""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from latentnav.errors import DataFormatError, run_command
from latentnav.nvidia_pickle import (ALLOWED_GLOBALS, VERSIONS, NetworkUnpickler, PersistentObject,
                                     normalised_source_sha256, read_network_pickle, require_version,
                                     sniff_network_pickle)
from latentnav.known_network_sources import KNOWN_SOURCES
from tests.latentnav.pickle_craft import Call, Global, New, dumps, persistent, rewrite_records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# fixture -> the version of the code that made it (the golden files record the original's init_kwargs)
REAL = {"stylegan2_ada_skip": "stylegan2-ada", "stylegan2_ada_resnet": "stylegan2-ada",
        "stylegan2_ada_cond": "stylegan2-ada", "stylegan2_ada_orig": "stylegan2-ada",
        "stylegan3_sg2": "stylegan3-stylegan2", "stylegan3_t": "stylegan3", "stylegan3_r": "stylegan3"}


def one_line(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(str(path)), message
    return message


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- real pickles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REAL))
def test_real_pickles_read_as_records(case):
    path = FIXTURES / f"{case}.pkl"
    gold = torch.load(FIXTURES / f"{case}_golden.pt", weights_only=True)
    blob = read_network_pickle(path)
    G = blob["G_ema"]
    assert isinstance(G, PersistentObject) and G.class_name == "Generator"
    assert G.version == REAL[case] and require_version(G, path) == REAL[case] and not G.version_given
    assert G.module_name in ("training.networks", "training.networks_stylegan2", "training.networks_stylegan3")
    expected = gold["init_kwargs"]  # the original's G.init_kwargs (the StyleGAN3 goldens keep some keys)
    assert {k: G.init_kwargs.get(k) for k in expected} == expected and type(G.init_kwargs) is dict
    state = G.state_dict()
    assert state and all(type(t) is torch.Tensor and not t.requires_grad for t in state.values())
    assert "mapping.w_avg" in state and state["mapping.w_avg"].shape == (G.init_kwargs["w_dim"],)
    for _, record in G.named_records():  # every sub-network is a record of the same source
        assert record.source_sha256 == G.source_sha256


def test_a_training_snapshot_reads_every_network():
    blob = read_network_pickle(FIXTURES / "stylegan2_ada_skip.pkl")
    assert {"G", "D", "G_ema"} <= set(blob) and blob["D"].class_name == "Discriminator"
    assert list(blob["G"].state_dict()) == list(blob["G_ema"].state_dict())
    assert isinstance(blob["training_set_kwargs"], dict) and type(blob["training_set_kwargs"]) is dict


def test_the_readers_allow_list_is_what_real_pickles_use():
    used = set()

    class Recording(NetworkUnpickler):
        def find_class(self, module, name):
            used.add((module, name))
            return super().find_class(module, name)

    for case in REAL:
        with open(FIXTURES / f"{case}.pkl", "rb") as f:
            Recording(f).load()
    assert used <= set(ALLOWED_GLOBALS)
    assert ("torch_utils.persistence", "_reconstruct_persistent_obj") in used
    assert ("torch.storage", "_load_from_bytes") in used


def test_rewritten_records_round_trip(tmp_path):
    """The test writer is faithful: records written back read as the same network (same version)."""
    original = read_network_pickle(FIXTURES / "stylegan2_ada_resnet.pkl")["G_ema"]
    path = write(tmp_path, "copy.pkl", dumps({"G_ema": rewrite_records(original)}))
    copy = read_network_pickle(path)["G_ema"]
    assert copy.version == "stylegan2-ada" and copy.init_kwargs == original.init_kwargs
    a, b = original.state_dict(), copy.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- the source hash ---------------------------------------------------------------------------------------


def test_normalised_hash_ignores_comments_layout_docstrings_and_bom():
    base = 'import torch\n\nclass A(torch.nn.Module):\n    """Doc."""\n    def f(self, x):\n        return x + 1\n'
    same = '\ufeff# header\nimport torch\nclass A( torch.nn.Module ):\n    def f(self, x):  # note\n        """Other."""\n\n        return (x + 1)\n'
    assert normalised_source_sha256(base) == normalised_source_sha256(same)
    assert normalised_source_sha256(base) != normalised_source_sha256(base.replace("x + 1", "x + 2"))
    assert normalised_source_sha256(base) != normalised_source_sha256(base.replace("x + 1", "x + 1.0"))
    assert len(normalised_source_sha256("def (:")) == 64  # text that does not parse: the raw bytes' hash


def test_the_table_covers_each_version_of_nvidias_code():
    assert {entry["version"] for entry in KNOWN_SOURCES.values()} == set(VERSIONS)
    assert all(len(entry["commits"]) >= 1 and entry["path"].startswith("training/") for entry in KNOWN_SOURCES.values())


# --- tampered files ----------------------------------------------------------------------------------------


def _command(marker: Path) -> str:
    return f"touch '{marker}'"


def test_an_embedded_source_that_runs_a_command_is_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    hostile = f"\nimport os\nos.system({_command(marker)!r})\n"
    control = tmp_path / "CONTROL"  # the appended lines do run a command when the source is executed
    exec(compile(hostile.replace(str(marker), str(control)), "<control>", "exec"), {})
    assert control.exists()

    real = read_network_pickle(FIXTURES / "stylegan2_ada_resnet.pkl")["G_ema"]
    path = write(tmp_path, "tampered.pkl", dumps({"G_ema": rewrite_records(real, lambda text: text + hostile)}))
    G = read_network_pickle(path)["G_ema"]  # reads as data: the source is hashed, never run
    assert G.version is None and G.source_sha256 != real.source_sha256 and hostile in G.source
    with pytest.raises(DataFormatError) as error:
        require_version(G, path)
    message = one_line(error, path)
    assert "unknown network source for Generator" in message and G.source_sha256[:16] in message
    assert "network_version=stylegan2-ada|stylegan3-stylegan2|stylegan3" in message
    # named by the user, only the weights and init_kwargs are used: still nothing runs
    given = read_network_pickle(path, version="stylegan2-ada")["G_ema"]
    assert given.version == "stylegan2-ada" and given.version_given
    assert all(r.version == "stylegan2-ada" for _, r in given.named_records())
    assert require_version(G, path, version="stylegan2-ada") == "stylegan2-ada"
    assert not marker.exists()


HOSTILE_GLOBALS = [("os", "system"), ("posix", "system"), ("subprocess", "check_call"), ("builtins", "exec"),
                   ("builtins", "eval"), ("torch", "load"), ("torch.serialization", "load"),
                   ("torch_utils.persistence", "_src_to_module"), ("numpy", "load"), ("pickle", "loads")]


@pytest.mark.parametrize("module,name", HOSTILE_GLOBALS)
def test_a_global_outside_the_allow_list_is_refused(tmp_path, module, name):
    marker = tmp_path / "MARKER"
    G = persistent("class Generator:\n    pass\n", "Generator",
                   {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                    "_modules": OrderedDict(), "evil": Call(Global(module, name), (_command(marker),))})
    path = write(tmp_path, "hostile.pkl", dumps({"G_ema": G}))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    message = one_line(error, path)
    assert f"refused, it calls {module}.{name}" in message and "nothing in it was run" in message
    assert not marker.exists()


def test_a_plain_torch_module_is_not_read(tmp_path):
    path = write(tmp_path, "linear.pkl", pickle.dumps({"G_ema": torch.nn.Linear(2, 2)}))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "it holds a plain torch module (torch.nn.modules.linear.Linear)" in one_line(error, path)


def test_control_the_hostile_bytes_do_run_a_command_when_unpickled_plainly(tmp_path):
    marker = tmp_path / "CONTROL"
    pickle.loads(dumps({"G_ema": Call(Global("os", "system"), (_command(marker),))}))
    assert marker.exists()


def _storage_payloads(marker: Path) -> dict:
    """Two nested storage payloads that run a command when ``torch.load``-ed without weights_only: a
    legacy-format (plain pickle) one and a zip one whose data.pkl calls ``os.system``."""
    call = Call(Global("os", "system"), (_command(marker),))
    legacy = dumps(call, protocol=2)
    buffer = io.BytesIO()
    torch.save(torch.zeros(2), buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            out.writestr(item, dumps(call, protocol=2) if item.filename.endswith("/data.pkl") else data)
    return {"legacy": legacy, "zip": zipped.getvalue()}


@pytest.mark.parametrize("kind", ["legacy", "zip"])
def test_a_nested_storage_payload_that_runs_a_command_is_refused(tmp_path, kind):
    marker = tmp_path / "MARKER"
    payload = _storage_payloads(marker)[kind]
    control = tmp_path / "CONTROL"  # the same payload through an unrestricted torch.load runs the command
    try:
        torch.load(io.BytesIO(_storage_payloads(control)[kind]), weights_only=False)
    except RuntimeError:  # the legacy payload: the command runs, then the magic number does not match
        pass
    assert control.exists()

    storage = Call(Global("torch.storage", "_load_from_bytes"), (payload,))
    weight = Call(Global("torch._utils", "_rebuild_parameter"),
                  (Call(Global("torch._utils", "_rebuild_tensor_v2"), (storage, 0, (2,), (1,), False, OrderedDict())),
                   False, OrderedDict()))
    G = persistent("class Generator:\n    pass\n", "Generator",
                   {"_parameters": OrderedDict(weight=weight), "_buffers": OrderedDict(), "_modules": OrderedDict()})
    path = write(tmp_path, "hostile.pkl", dumps({"G_ema": G}))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    message = one_line(error, path)
    assert "refused, a nested storage payload calls os.system" in message
    assert not marker.exists()


def test_a_tensor_type_is_a_name_only(tmp_path):
    path = write(tmp_path, "tensor_call.pkl", dumps({"G_ema": Call(Global("torch", "Tensor"), ([1.0, 2.0],))}))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "TypeError" in one_line(error, path)


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_a_truncated_pickle_is_one_line(tmp_path, fraction):
    data = (FIXTURES / "stylegan2_ada_resnet.pkl").read_bytes()
    path = write(tmp_path, "cut.pkl", data[: max(3, int(len(data) * fraction))])
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    message = one_line(error, path)
    assert "truncated" in message or "not a readable pickle" in message or "unreadable" in message


@pytest.mark.parametrize("payload,expected", [
    (pickle.dumps([1, 2, 3]), "not a network pickle (it holds a list, expected a dict with G_ema / G / D networks)"),
    (pickle.dumps({"generator": 1, "lr": 0.1}), "not a network pickle (a dict without G_ema / G / D networks; keys: generator, lr)"),
    (pickle.dumps({"G_ema": {"weight": 1}}), "a dict without G_ema / G / D networks"),
    (b"this is a text file\n", "not a pickle file"),
    (b"", "not a pickle file"),
    (b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\x00" * 16, "not a readable"),
])
def test_another_kind_of_file_is_one_line(tmp_path, payload, expected):
    path = write(tmp_path, "other.pkl", payload)
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert expected in one_line(error, path)


def test_a_torch_checkpoint_and_a_missing_file_are_one_line(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"G_ema": torch.zeros(2)}, path)
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "a zip file (a torch.save checkpoint?), not a network pickle" in one_line(error, path)
    with pytest.raises(DataFormatError, match="missing.pkl: file not found"):
        read_network_pickle(tmp_path / "missing.pkl")


def test_a_tensorflow_pickle_is_named_as_one(tmp_path):
    net = New(Global("dnnlib.tflib.network", "Network"), (), {"version": 4, "name": "G", "variables": []})
    path = write(tmp_path, "tf.pkl", dumps((net, net, net)))
    assert sniff_network_pickle(path) == "tensorflow"
    assert sniff_network_pickle(FIXTURES / "stylegan2_ada_resnet.pkl") == "persistence"
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "a TensorFlow-era StyleGAN2 pickle" in one_line(error, path)


def test_an_unknown_network_version_is_one_line_and_so_is_a_wrong_override(tmp_path):
    G = persistent("class Generator:\n    pass\n", "Generator",
                   {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict(),
                    "_init_kwargs": {"z_dim": 8}})
    path = write(tmp_path, "unknown.pkl", dumps({"G_ema": G}))
    record = read_network_pickle(path)["G_ema"]
    assert record.version is None and record.init_kwargs == {"z_dim": 8} and record.module_name == "<embedded>"
    with pytest.raises(DataFormatError) as error:
        require_version(record, path)
    assert f"unknown network source for Generator (normalised source sha256 {record.source_sha256[:16]}" in one_line(error, path)
    with pytest.raises(DataFormatError, match=r"generator: network_version 'stylegan4' is not one of stylegan2-ada, "):
        read_network_pickle(path, version="stylegan4")


def test_a_bad_file_prints_one_line_through_a_command(tmp_path, capsys):
    path = write(tmp_path, "cut.pkl", (FIXTURES / "stylegan2_ada_resnet.pkl").read_bytes()[:1000])
    assert run_command(lambda: read_network_pickle(path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"latentnav: error: {path}: ")


def test_non_persistent_buffers_are_not_in_the_state_dict(tmp_path):
    child = persistent("class Layer:\n    pass\n", "Layer",
                       {"_parameters": OrderedDict(weight=torch.nn.Parameter(torch.ones(2, 3))),
                        "_buffers": OrderedDict(kept=torch.zeros(1), scratch=torch.zeros(4), gone=None),
                        "_non_persistent_buffers_set": {"scratch"}, "_modules": OrderedDict()})
    G = persistent("class Generator:\n    pass\n", "Generator",
                   {"_parameters": OrderedDict(bias=torch.nn.Parameter(torch.zeros(3))), "_buffers": OrderedDict(),
                    "_modules": OrderedDict(layer=child, empty=None)})
    for protocol in (2, 3, 4):  # Python 3.7 wrote protocol 3 by default (sets as calls, bytes as opcodes)
        path = write(tmp_path, f"p{protocol}.pkl", dumps({"G_ema": G}, protocol=protocol))
        record = read_network_pickle(path)["G_ema"]
        assert list(record.state_dict()) == ["bias", "layer.weight", "layer.kept"]
        assert record.child("layer").class_name == "Layer" and record.state_dict()["layer.weight"].shape == (2, 3)
    assert os.path.getsize(path) < 10_000


# --- the stand-ins' checks -----------------------------------------------------------------------------------


def _with_attribute(value) -> bytes:
    return dumps({"G_ema": persistent("class Generator:\n    pass\n", "Generator",
                                      {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                                       "_modules": OrderedDict(), "value": value})})


def _np_array(values, name="f4", state_tail=(None, None, None, -1, -1, 0), raw=None):
    values = np.asarray(values, dtype=np.dtype(name))
    dtype = Call(Global("numpy", "dtype"), (name, False, True), (3, "<", *state_tail))
    return Call(Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"),
                (1, values.shape, dtype, False, values.tobytes() if raw is None else raw))


def test_numpy_values_read_as_plain_arrays(tmp_path):
    path = write(tmp_path, "np.pkl", _with_attribute([_np_array([[1, 2], [3, 4]], "i8"), _np_array(2.5, "f8")]))
    matrix, scalar = read_network_pickle(path)["G_ema"].attribute("value")
    assert type(matrix) is np.ndarray and matrix.dtype == np.int64 and matrix.tolist() == [[1, 2], [3, 4]]
    assert scalar.shape == () and float(scalar) == 2.5
    sg3 = read_network_pickle(FIXTURES / "stylegan3_t.pkl")["G_ema"]  # StyleGAN3 keeps numpy attributes
    assert any(isinstance(v, np.ndarray) for _, r in sg3.named_records() for v in r.state.values())


@pytest.mark.parametrize("value,expected", [
    (Call(Global("numpy", "dtype"), ("O8", False, True)), "a numpy dtype 'O8' (only plain numbers are read)"),
    (_np_array([1.0], state_tail=(None, ("a",), {"a": (None, 0)}, 8, 1, 0)), "a numpy dtype with fields"),
    (_np_array([1.0, 2.0], raw=b"\x00" * 4), "a numpy array whose data does not match its shape"),
    (Call(Global("numpy", "ndarray"), ((10 ** 12,),)), "TypeError"),
    (Call(Global("torch._utils", "_rebuild_tensor_v2"),
          (Call(Global("torch.storage", "_load_from_bytes"), (None,)), 0, (2,), (1,), False, OrderedDict())),
     "a storage payload is a NoneType, not bytes"),
])
def test_malformed_values_are_one_line(tmp_path, value, expected):
    path = write(tmp_path, "bad.pkl", _with_attribute(value))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert expected in one_line(error, path)


def test_an_expanded_tensor_view_is_refused(tmp_path):
    with warnings.catch_warnings():  # TypedStorage: what pickling a tensor writes
        warnings.simplefilter("ignore")
        _, (payload,) = torch.zeros(4).storage().__reduce__()  # a real payload of 4 floats
    view = Call(Global("torch._utils", "_rebuild_tensor_v2"),
                (Call(Global("torch.storage", "_load_from_bytes"), (payload,)), 0, (10 ** 9, 10 ** 9), (0, 0),
                 False, OrderedDict()))
    path = write(tmp_path, "view.pkl", _with_attribute(view))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "more elements than its storage" in one_line(error, path)


def test_a_record_cannot_be_rewritten_after_it_is_built(tmp_path):
    G = persistent("class Generator:\n    pass\n", "Generator", {"_parameters": OrderedDict()})
    G.state = {"version": "stylegan2-ada", "source_sha256": next(iter(KNOWN_SOURCES))}  # a BUILD after the call
    path = write(tmp_path, "build.pkl", dumps({"G_ema": G}))
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "sets state on a persistent object" in one_line(error, path)
    record = read_network_pickle(FIXTURES / "stylegan2_ada_resnet.pkl")["G_ema"]
    copy = __import__("copy").deepcopy(record)  # a record still deep-copies
    assert copy.version == record.version and list(copy.state_dict()) == list(record.state_dict())


def test_data_nested_too_deeply_is_one_line(tmp_path):
    n = 5000  # {"x": [[[...]]]} 5000 lists deep, written as opcodes (pickle itself would recurse)
    data = b"\x80\x04}" + b"X\x01\x00\x00\x00x" + b"]" * n + b"a" * (n - 1) + b"s."
    path = write(tmp_path, "deep.pkl", data)
    with pytest.raises(DataFormatError) as error:
        read_network_pickle(path)
    assert "nested too deeply" in one_line(error, path)

"""TensorFlow-era StyleGAN2 pickles read as data (``latentnav.tf_pickle``): Network states as records, the
graph builder's text never run, only numpy and plain containers allowed, bad files one line each.
The fixtures are made by ``tests/generators/make_tf_stylegan2_golden.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentnav.errors import DataFormatError
from latentnav.nvidia_pickle import TFNetwork, sniff_network_pickle
from latentnav.tf_pickle import collect_variables, read_tf_network_pickle
from tests.latentnav.pickle_craft import Call, Global, New, dumps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NETWORK = Global("dnnlib.tflib.network", "Network")


def net(variables=(), components=None, version=4, source="", func="G_main") -> New:
    return New(NETWORK, (), {"version": version, "name": "G", "static_kwargs": {"resolution": 16},
                             "components": components or {}, "build_module_src": source,
                             "build_func_name": func, "variables": list(variables)})


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "net.pkl"
    path.write_bytes(data)
    return path


def refused(path: Path, expected: str) -> str:
    with pytest.raises(DataFormatError) as error:
        read_tf_network_pickle(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path)) and expected in message, message
    return message


def test_a_fixture_reads_as_network_records():
    path = FIXTURES / "tf_stylegan2_cond.pkl"
    assert sniff_network_pickle(path) == "tensorflow"
    nets = read_tf_network_pickle(path)
    Gs = nets["Gs"]
    assert isinstance(Gs, TFNetwork) and Gs.version == 4 and Gs.build_func_name == "G_main"
    assert set(Gs.components) == {"mapping", "synthesis"} and Gs.static_kwargs["label_size"] == 3
    variables = collect_variables(Gs)
    assert variables["dlatent_avg"].shape == (16,) and variables["mapping/LabelEmbed/weight"].shape == (3, 8)
    assert variables["synthesis/4x4/Const/const"].shape == (1, 16, 4, 4)
    assert variables["synthesis/16x16/Conv0_up/weight"].shape == (3, 3, 16, 8)
    assert variables["synthesis/4x4/Conv/noise_strength"].shape == ()
    assert all(v.dtype == np.float32 for v in variables.values())
    assert "never run" in Gs.build_module_src  # kept as text
    assert nets["D"].build_func_name == "D_stylegan2"


def test_the_graph_builders_text_is_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    source = f"import os\nos.system('touch {marker}')\n"
    exec(compile(source.replace("MARKER", "CONTROL"), "<control>", "exec"), {})  # the text does run a command
    assert (tmp_path / "CONTROL").exists()
    path = write(tmp_path, dumps((net(source=source), net(source=source), net(source=source))))
    nets = read_tf_network_pickle(path)
    assert nets["Gs"].build_module_src == source and not marker.exists()


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "exec"),
                                         ("torch.storage", "_load_from_bytes"),  # no torch in a TF pickle
                                         ("dnnlib.tflib.tfutil", "run")])
def test_a_global_outside_the_tf_allow_list_is_refused(tmp_path, module, name):
    marker = tmp_path / "MARKER"
    hostile = Call(Global(module, name), (f"touch {marker}",))
    path = write(tmp_path, dumps((net([("w", hostile)]), net(), net())))
    refused(path, f"refused, it calls {module}.{name}")
    assert not marker.exists()


def test_bad_files_are_one_line(tmp_path):
    data = (FIXTURES / "tf_stylegan2_skip.pkl").read_bytes()
    refused(write(tmp_path, data[: len(data) // 2]), "truncated pickle")
    refused(write(tmp_path, dumps([1, 2])), "not a TensorFlow StyleGAN2 pickle (it holds a list")
    refused(write(tmp_path, dumps((net(), net()))), "not a TensorFlow StyleGAN2 pickle (it holds a tuple")
    refused(write(tmp_path, dumps((net(version=3), net(), net()))), "G is a TensorFlow Network of format version 3")
    refused(write(tmp_path, dumps((net([("w", "text")]), net(), net()))), "G has a variable that is not a (name, numeric array) pair")
    refused(write(tmp_path, dumps((net(components={"mapping": 5}), net(), net()))), "G/mapping is a int, not a TensorFlow Network")
    refused(write(tmp_path, b"hello"), "not a pickle file")
    path = tmp_path / "ada.pkl"
    path.write_bytes((FIXTURES / "stylegan2_ada_resnet.pkl").read_bytes())
    refused(path, "a PyTorch (StyleGAN2-ADA / StyleGAN3) network pickle, not a TensorFlow one")


def test_a_lone_generator_reads_as_gs(tmp_path):
    nets = read_tf_network_pickle(write(tmp_path, dumps(net([("dlatent_avg", np.zeros(4, np.float32))]))))
    assert list(nets) == ["Gs"] and collect_variables(nets["Gs"])["dlatent_avg"].shape == (4,)

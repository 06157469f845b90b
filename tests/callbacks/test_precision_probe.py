"""The bf16 probe: under bf16-mixed on a CPU, one warning line when the generator ran slower than in fp32."""

from types import SimpleNamespace

import pytest
import torch

import latentnav.callbacks.precision_probe as probe
from latentnav.callbacks.precision_probe import PrecisionProbe, time_generator
from latentnav.generators import load_generator


def _trainer(precision: str, device: str = "cpu"):
    return SimpleNamespace(precision=precision, strategy=SimpleNamespace(root_device=torch.device(device)),
                           training=False)


def test_the_probe_times_both_precisions_on_the_generator():
    G = load_generator("demo")
    found = time_generator(G, batch_size=2, batches=2)
    assert set(found) == {"32", "bf16"} and all(t > 0 for t in found.values())


@pytest.mark.parametrize("bf16, warned", [(2.0, True), (0.5, False)])
def test_one_line_when_bf16_is_slower(monkeypatch, bf16, warned):
    monkeypatch.setattr(probe, "time_generator", lambda G, n, b: {"32": 1.0, "bf16": bf16})
    module = SimpleNamespace(generator=load_generator("demo"))
    callback = PrecisionProbe()
    expected = r"precision bf16-mixed: the generator ran 2.0x slower than in float32 on this CPU \(.+; a 2-batch probe\)"
    with pytest.warns(UserWarning, match=expected) if warned else _no_warning():
        callback.on_predict_start(_trainer("bf16-mixed"), module)
    if warned:
        assert callback.result == {"32": 1.0, "bf16": 2.0}


def test_no_probe_in_fp32_on_a_gpu_or_without_a_generator(monkeypatch):
    calls = []
    monkeypatch.setattr(probe, "time_generator", lambda *a: calls.append(a) or {"32": 1.0, "bf16": 9.0})
    G = load_generator("demo")
    PrecisionProbe().on_fit_start(_trainer("32-true"), SimpleNamespace(generator=G))
    PrecisionProbe().on_fit_start(_trainer("bf16-mixed", "meta"), SimpleNamespace(generator=G))
    PrecisionProbe().on_fit_start(_trainer("bf16-mixed"), SimpleNamespace())
    PrecisionProbe(enabled=False).on_fit_start(_trainer("bf16-mixed"), SimpleNamespace(generator=G))
    assert calls == []


def test_every_measuring_trainer_carries_the_probe():
    from latentnav.commands.measuring import make_trainer

    trainer = make_trainer(accelerator="cpu", precision="bf16-mixed")
    assert any(isinstance(c, PrecisionProbe) for c in trainer.callbacks)


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._found = self._catch.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert not [w for w in self._found if "precision bf16-mixed" in str(w.message)]

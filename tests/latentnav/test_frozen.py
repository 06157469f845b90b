"""Frozen means frozen: the generator and the annotator under a parent's requires_grad_(True), DDP and pickling."""

import copy
import pickle

import torch
from torch import nn

from latentnav.frozen import FrozenParameter
from latentnav.generators import load_generator
from latentnav.lightning_modules.annotator import load_annotator


def _frozen_pair(tmp_path):
    """The demo generator (z (B, 64), BN in eval) and the demo classifier. (A TorchScript generator's
    parameters cannot be replaced: only its own requires_grad_ is guarded, tests/generators/test_loading.py.)"""
    return load_generator("demo"), load_annotator("demo")


def _unchanged(module, before) -> bool:
    return all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_a_parents_requires_grad_true_does_not_unfreeze(tmp_path):
    G, judge = _frozen_pair(tmp_path)
    head = nn.Linear(12, 1)
    parent = nn.ModuleList([G, judge, head]).requires_grad_(True)
    for frozen in (G, judge):
        params = list(frozen.parameters())
        assert params and all(isinstance(p, FrozenParameter) and not p.requires_grad for p in params)
        assert not any(torch.Tensor.requires_grad.__get__(p) for p in params)  # autograd's own flag too
    assert all(p.requires_grad for p in head.parameters())
    p = next(G.parameters())
    p.requires_grad = True
    p.requires_grad_(True)
    assert not p.requires_grad
    before = {m: copy.deepcopy(m.state_dict()) for m in (G, judge)}
    optimiser = torch.optim.AdamW(parent.parameters(), lr=0.1, weight_decay=0.1)  # every parameter, as careless code does
    parent.train()
    z = torch.randn(16, 64, requires_grad=True)
    loss = head(judge.logits(G.synthesize(z))).pow(2).mean()
    loss.backward()
    optimiser.step()
    assert z.grad.abs().sum() > 0 and head.weight.grad is not None
    assert all(q.grad is None for m in (G, judge) for q in m.parameters())
    assert _unchanged(G, before[G]) and _unchanged(judge, before[judge])
    assert not G.training and not judge.training


def test_frozen_through_copies_pickles_and_devices(tmp_path):
    G, _ = _frozen_pair(tmp_path)
    for other in (copy.deepcopy(G), pickle.loads(pickle.dumps(G)), G.to(torch.float64)):
        assert all(isinstance(p, FrozenParameter) for p in other.parameters())
        nn.Sequential(other).requires_grad_(True)
        assert not any(p.requires_grad for p in other.parameters())
    assert not any(isinstance(v, FrozenParameter) for v in G.state_dict().values())  # plain tensors in files


def test_ddp_wrapping_leaves_the_frozen_weights_out(tmp_path):
    """Under DDP (one gloo process) the frozen weights are not DDP parameters: not synced, not trained."""
    import torch.distributed as dist

    G, judge = _frozen_pair(tmp_path)

    class Editor(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator, self.annotator, self.shift = G, judge, nn.Parameter(torch.zeros(64))

        def forward(self, z):
            return self.annotator.logits(self.generator.synthesize(z + self.shift)).mean()

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = Editor().requires_grad_(True)
        ddp = nn.parallel.DistributedDataParallel(model)
        assert [n for n, p in ddp.module.named_parameters() if p.requires_grad] == ["shift"]
        before = copy.deepcopy(G.state_dict())
        optimiser = torch.optim.SGD(ddp.parameters(), lr=1.0)
        ddp(torch.randn(4, 64)).backward()
        optimiser.step()
        assert model.shift.abs().sum() > 0 and _unchanged(G, before)
    finally:
        dist.destroy_process_group()

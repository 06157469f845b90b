import torch

from datamodules.annotated_latents import AnnotatedLatentsDataModule
from generators import load_generator
from lightning_modules.annotator import load_annotator


def test_annotates_once_and_reuses_the_cache(tmp_path):
    dm = AnnotatedLatentsDataModule(num_train=300, num_val=100, cache_dir=str(tmp_path), attributes=["Young", "Male"],
                                    annotate_batch_size=128, target="logits")
    dm.prepare_data()
    mtime = (tmp_path / "train.pt").stat().st_mtime_ns
    dm.prepare_data()
    assert (tmp_path / "train.pt").stat().st_mtime_ns == mtime
    dm.setup("fit")
    assert dm.attribute_names == ["Young", "Male"]
    z, y = dm.data["train"].tensors
    assert z.shape == (300, 64) and y.shape == (300, 2)
    G, judge = load_generator("demo"), load_annotator("demo")
    with torch.no_grad():
        expected = judge.logits(G.synthesize(z[:5]))[:, [11, 6]]
    torch.testing.assert_close(y[:5], expected, atol=1e-4, rtol=1e-4)
    assert not torch.equal(dm.data["val"].tensors[0][:5], z[:5])  # val uses its own seed

    probs = AnnotatedLatentsDataModule(num_train=300, num_val=100, cache_dir=str(tmp_path), target="probabilities")
    probs.prepare_data()
    probs.setup("fit")
    assert (tmp_path / "train.pt").stat().st_mtime_ns == mtime  # same cache, another view of it
    torch.testing.assert_close(probs.data["train"].tensors[1][:, 11], torch.sigmoid(y[:, 0]))


def test_stream_mode_labels_fresh_latents_per_rank(tmp_path):
    from types import SimpleNamespace

    dm = AnnotatedLatentsDataModule(num_train=10, num_val=50, cache_dir=str(tmp_path), mode="stream", batch_size=16, target="logits",
                                    stream_batches_per_epoch=3, attributes=["Smiling"])
    dm.prepare_data()
    assert not (tmp_path / "train.pt").exists()
    dm.setup("fit")
    batches = {}
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank)
        batches[rank] = list(dm.train_dataloader())
    assert len(batches[0]) == 3 and batches[0][0][0].shape == (16, 64) and batches[0][0][1].shape == (16, 1)
    assert not torch.equal(batches[0][0][0], batches[1][0][0])  # disjoint streams per rank
    G, judge = load_generator("demo"), load_annotator("demo")
    z, y = batches[1][2]
    with torch.no_grad():
        torch.testing.assert_close(y[:, 0], judge.logits(G.synthesize(z))[:, 8], atol=1e-4, rtol=1e-4)

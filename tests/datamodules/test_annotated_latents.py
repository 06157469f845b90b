import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule
from latentnav.generators import load_generator
from latentnav.errors import DataFormatError
from latentnav.lightning_modules.annotator import load_annotator
from latentnav.lightning_modules.supervised_directions import SupervisedDirections


def test_annotates_once_and_reuses_the_store(tmp_path):
    dm = AnnotatedLatentsDataModule(num_train=300, num_val=100, cache_dir=str(tmp_path), attributes=["Young", "Male"],
                                    annotate_batch_size=128, shard_size=128, target="logits")
    dm.prepare_data()
    shards = sorted(p.name for p in (tmp_path / "train").glob("shard_*.pt"))
    assert shards == ["shard_00000.pt", "shard_00001.pt", "shard_00002.pt"]  # 128 + 128 + 44
    mtime = (tmp_path / "train" / "shard_00001.pt").stat().st_mtime_ns
    dm.prepare_data()
    assert (tmp_path / "train" / "shard_00001.pt").stat().st_mtime_ns == mtime
    dm.setup("fit")
    assert dm.attribute_names == ["Young", "Male"]
    z, y = dm.data["train"].tensors()
    assert z.shape == (300, 64) and y.shape == (300, 2)
    G, judge = load_generator("demo"), load_annotator("demo")
    torch.testing.assert_close(z, G.latents_at(range(300), seed=0))
    with torch.no_grad():
        expected = judge.logits(G.synthesize(z[120:135]))[:, [11, 6]]  # rows across a shard boundary
    torch.testing.assert_close(y[120:135], expected, atol=1e-4, rtol=1e-4)
    assert not torch.equal(dm.data["val"].tensors()[0][:5], z[:5])  # val uses its own seed

    probs = AnnotatedLatentsDataModule(num_train=300, num_val=100, cache_dir=str(tmp_path), shard_size=128,
                                       target="probabilities")
    probs.prepare_data()
    probs.setup("fit")
    assert (tmp_path / "train" / "shard_00001.pt").stat().st_mtime_ns == mtime  # same store, another view of it
    torch.testing.assert_close(probs.data["train"].tensors()[1][:, 11], torch.sigmoid(y[:, 0]))

    # A store made with other settings is refused in one line when read as is.
    other = AnnotatedLatentsDataModule(num_train=300, num_val=100, cache_dir=str(tmp_path), shard_size=128, seed=5)
    with pytest.raises(DataFormatError, match=r"train/manifest.json: made with seed 0, expected 5$"):
        other.setup("fit")


def test_sharded_store_gives_the_same_batches_and_fit_as_in_memory_tensors(tmp_path):
    """The fit does not change for the same latents: the lazy store yields the batches a TensorDataset would."""
    dm = AnnotatedLatentsDataModule(num_train=600, num_val=100, cache_dir=str(tmp_path), shard_size=250,
                                    batch_size=64, attributes=["Smiling", "Male"])
    dm.prepare_data()
    dm.setup("fit")
    z, y = dm.data["train"].tensors()
    memory = TensorDataset(z.clone(), y.clone())

    def loader(dataset):
        return DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(3))

    for (za, ya), (zb, yb) in zip(loader(dm.data["train"]), loader(memory)):
        assert torch.equal(za, zb) and torch.equal(ya, yb)

    def fit(dataset):
        pl.seed_everything(0)
        model = SupervisedDirections(["Smiling", "Male"], 64, ortho_weight=1.0, lr=0.01)
        pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0).fit(model, loader(dataset))
        return model.map.weight.detach()

    torch.testing.assert_close(fit(dm.data["train"]), fit(memory), atol=0, rtol=0)

    # Validation on 3 processes: 100 latents sliced unpadded, each seen exactly once (not 102 with repeats).
    from types import SimpleNamespace

    seen = []
    for rank in range(3):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=3)
        seen += [z for z, _ in dm.val_dataloader()]
    seen = torch.cat(seen)
    val, _ = dm.data["val"].tensors()
    assert len(seen) == 100 and torch.equal(seen[seen[:, 0].argsort()], val[val[:, 0].argsort()])


def test_stream_mode_labels_fresh_latents_per_rank(tmp_path):
    from types import SimpleNamespace

    dm = AnnotatedLatentsDataModule(num_train=10, num_val=50, cache_dir=str(tmp_path), mode="stream", batch_size=16, target="logits",
                                    stream_batches_per_epoch=3, attributes=["Smiling"])
    dm.prepare_data()
    assert not (tmp_path / "train").exists()
    dm.setup("fit")
    batches = {}
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank, current_epoch=0)
        batches[rank] = list(dm.train_dataloader())
    # Epochs draw new latents; a fit resumed at epoch 1 draws epoch 1's, not epoch 0's again.
    dm.trainer = SimpleNamespace(global_rank=0, current_epoch=0)
    loader = dm.train_dataloader()
    first, second = list(loader), list(loader)
    assert torch.equal(first[0][0], batches[0][0][0]) and not torch.equal(second[0][0], first[0][0])
    dm.trainer = SimpleNamespace(global_rank=0, current_epoch=1)
    assert torch.equal(list(dm.train_dataloader())[0][0], second[0][0])
    assert len(batches[0]) == 3 and batches[0][0][0].shape == (16, 64) and batches[0][0][1].shape == (16, 1)
    assert not torch.equal(batches[0][0][0], batches[1][0][0])  # disjoint streams per rank
    G, judge = load_generator("demo"), load_annotator("demo")
    z, y = batches[1][2]
    with torch.no_grad():
        torch.testing.assert_close(y[:, 0], judge.logits(G.synthesize(z))[:, 8], atol=1e-4, rtol=1e-4)


def small(cache_dir, **kwargs) -> AnnotatedLatentsDataModule:
    """Two small stores (train: shards of 40, 40, 20 latents; val: 40)."""
    return AnnotatedLatentsDataModule(num_train=100, num_val=40, cache_dir=str(cache_dir), shard_size=40,
                                      annotate_batch_size=40, target="logits", **kwargs)


@pytest.mark.parametrize("damage", ["empty manifest", "garbage manifest", "truncated shard"])
def test_an_unreadable_store_is_rebuilt_by_prepare_data(tmp_path, damage):
    clean = small(tmp_path)
    clean.prepare_data()
    clean.setup("fit")
    expected = clean.data["train"].tensors()
    del clean  # its memory-mapped shards
    store = tmp_path / "train"
    inodes = {p.name: p.stat().st_ino for p in store.glob("shard_*.pt")}
    if damage == "empty manifest":
        (store / "manifest.json").write_bytes(b"")
    elif damage == "garbage manifest":
        (store / "manifest.json").write_bytes(b'\x80{"key": ')
    else:
        shard = store / "shard_00001.pt"
        shard.write_bytes(shard.read_bytes()[:-100])
    if "manifest" in damage:  # read as is: one line (setup without prepare_data)
        with pytest.raises(DataFormatError, match=r"train/manifest.json: not a JSON manifest$"):
            small(tmp_path).setup("fit")

    dm = small(tmp_path)
    dm.prepare_data()  # re-annotates what is unreadable instead of failing
    dm.setup("fit")
    z, y = dm.data["train"].tensors()
    assert torch.equal(z, expected[0]) and torch.equal(y, expected[1])
    rewritten = {p.name for p in store.glob("shard_*.pt") if p.stat().st_ino != inodes[p.name]}
    assert rewritten == ({"shard_00001.pt"} if damage == "truncated shard" else set())  # the good shards are kept
    assert not list(store.glob(".*.tmp-*"))


def _prepare_together(cache_dir: str, log: str, start) -> None:
    """One of two runs of one config started together (a spawned process): logs each annotation job it runs."""
    dm = small(cache_dir)
    annotate = dm._annotate

    def logged(split: str, job) -> None:
        with open(log, "a") as f:
            f.write(f"{split}\n")
        annotate(split, job)

    dm._annotate = logged
    dm._key("train"), dm._key("val")  # hash the sources first: both runs reach the store together
    start.wait(timeout=120)
    dm.prepare_data()


def test_two_runs_started_together_annotate_each_store_once(tmp_path):
    """Without the store's lock both runs would find it unfinished and annotate it (4 jobs, not 2)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    start, log = ctx.Barrier(2), tmp_path / "annotation_jobs.txt"
    runs = [ctx.Process(target=_prepare_together, args=(str(tmp_path / "cache"), str(log), start)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    assert [run.exitcode for run in runs] == [0, 0]
    assert sorted(log.read_text().split()) == ["train", "val"]  # each store annotated once; the other run waited
    dm = small(tmp_path / "cache")
    dm.setup("fit")
    torch.testing.assert_close(dm.data["train"].tensors()[0], load_generator("demo").latents_at(range(100), seed=0))
    assert sorted(p.name for p in (tmp_path / "cache" / "train").iterdir()) == [
        ".lock", "manifest.json", "shard_00000.pt", "shard_00001.pt", "shard_00002.pt"]

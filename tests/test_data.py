"""nnstudy.data: decoding, caching and error reporting on small data made here."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnstudy.data import DATASETS, ImageData, load_dataset
from nnstudy.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


def raises_user_error(fn, *must_contain) -> str:
    """Call fn, expect a one-line UserError containing every given text."""
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for text in must_contain:
        assert str(text) in msg, msg
    return msg


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


# ----------------------------------------------------------------- digits, cache, subset

def test_digits_loads_and_second_load_hits_cache(tmp_path, monkeypatch):
    data = load_dataset("digits", None, tmp_path / "cache")
    assert isinstance(data, ImageData) and data.name == "digits"
    assert data.classes == [str(d) for d in range(10)]
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (1, 8, 8)
    assert data.train_y.dtype == torch.int64 and len(data.train_y) + len(data.test_y) == 1797
    assert len(data.test_y) == 359 and int(data.train_x.max()) == 255
    assert data.train_x.is_contiguous() and "seed 0" in data.source
    assert len(list((tmp_path / "cache").glob("digits-*.pt"))) == 1

    import sklearn.datasets

    def fail():
        raise AssertionError("cache miss: sklearn was called again")

    monkeypatch.setattr(sklearn.datasets, "load_digits", fail)
    again = load_dataset("digits", None, tmp_path / "cache")
    assert again.fingerprint == data.fingerprint
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


def test_corrupt_cache_is_rebuilt(tmp_path):
    data = load_dataset("digits", None, tmp_path)
    (cache,) = tmp_path.glob("digits-*.pt")
    cache.write_bytes(cache.read_bytes()[:1000])
    rebuilt = load_dataset("digits", None, tmp_path)
    assert rebuilt.fingerprint == data.fingerprint
    cache.write_bytes(b"garbage")
    assert load_dataset("digits", None, tmp_path).fingerprint == data.fingerprint


def test_subset_is_fixed_stratified_and_checked(tmp_path):
    data = load_dataset("digits", None, tmp_path)
    a, b = data.subset(100, 50), data.subset(100, 50)
    assert len(a.train_y) == 100 and len(a.test_y) == 50
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.fingerprint == b.fingerprint != data.fingerprint
    assert data.subset(200, 50).fingerprint != a.fingerprint
    assert a.train_y.bincount(minlength=10).tolist() == [10] * 10  # stratified
    assert data.subset(None, None) is data
    whole_test = data.subset(100, None)
    assert torch.equal(whole_test.test_x, data.test_x)
    raises_user_error(lambda: data.subset(5000, None), "5000", str(len(data.train_y)))
    raises_user_error(lambda: data.subset(None, 0), "positive")


def test_unknown_dataset_and_missing_data_dir(tmp_path):
    assert "digits" in DATASETS and "imagefolder" in DATASETS
    raises_user_error(lambda: load_dataset("svhn", None, tmp_path), "svhn", "digits")
    raises_user_error(lambda: load_dataset("mnist", None, tmp_path), "dataset mnist needs a data folder", "--data-dir")
    raises_user_error(lambda: load_dataset("imagefolder", None, tmp_path), "dataset imagefolder needs a data folder")


# ----------------------------------------------------------------- MNIST-style IDX

def write_idx(path: Path, array: np.ndarray, gz: bool = False, magic: bytes | None = None) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (magic or bytes([0, 0, 8, array.ndim])) + np.array(array.shape, dtype=">u4").tobytes()
    raw = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_idx_set(folder: Path, gz: bool = False, n_train: int = 12, n_test: int = 5):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test)[::-1] % 10,
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr, gz=gz)
    return arrays


def test_mnist_from_torchvision_layout(tmp_path):
    arrays = make_idx_set(tmp_path / "data" / "MNIST" / "raw")
    data = load_dataset("mnist", tmp_path / "data", tmp_path / "cache", download=False)
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert data.test_y.tolist() == list(arrays["t10k-labels-idx1-ubyte"])
    assert data.classes[0] == "0 - zero" and len(data.classes) == 10
    assert str(tmp_path / "data" / "MNIST" / "raw") in data.source


def test_fashion_mnist_gz_files_directly_in_data_dir(tmp_path):
    arrays = make_idx_set(tmp_path / "fm", gz=True)
    data = load_dataset("fashion-mnist", tmp_path / "fm", tmp_path / "cache", download=False)
    assert data.classes[0] == "T-shirt/top"
    assert np.array_equal(data.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    # A changed source file gets a new cache entry, not the stale one.
    write_idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", np.zeros(12), gz=True)
    os.utime(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", ns=(1, 1))
    changed = load_dataset("fashion-mnist", tmp_path / "fm", tmp_path / "cache", download=False)
    assert changed.train_y.tolist() == [0] * 12 and changed.fingerprint != data.fingerprint


def test_idx_bad_magic_and_bad_size(tmp_path):
    raw = tmp_path / "d" / "MNIST" / "raw"
    make_idx_set(raw)
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((12, 28, 28)), magic=b"\x00\x00\x09\x03")
    raises_user_error(lambda: load_dataset("mnist", tmp_path / "d", tmp_path / "c", download=False),
                      raw / "train-images-idx3-ubyte", "magic")
    make_idx_set(raw)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-2])
    raises_user_error(lambda: load_dataset("mnist", tmp_path / "d", tmp_path / "c", download=False), bad, "size")


def test_idx_label_count_mismatch(tmp_path):
    raw = tmp_path / "d"
    make_idx_set(raw)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(3))
    raises_user_error(lambda: load_dataset("mnist", raw, tmp_path / "c", download=False), "12 images", "3 labels")


def test_mnist_missing_without_download(tmp_path):
    (tmp_path / "empty").mkdir()
    raises_user_error(lambda: load_dataset("mnist", tmp_path / "empty", tmp_path / "c", download=False),
                      "mnist not found in", "looked for", "MNIST/raw", "--data-dir")
    raises_user_error(lambda: load_dataset("cifar10", tmp_path / "nope", tmp_path / "c", download=False), tmp_path / "nope")


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="real MNIST not available")
def test_real_mnist_matches_torchvision(tmp_path):
    import torchvision

    data = load_dataset("mnist", SHARED, tmp_path, download=False)
    ref = torchvision.datasets.MNIST(root=str(SHARED), train=False, download=False)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(data.test_x[:, 0], ref.data) and torch.equal(data.test_y, ref.targets)
    assert load_dataset("mnist", SHARED, tmp_path, download=False).fingerprint == data.fingerprint


# ----------------------------------------------------------------- CIFAR

def test_cifar10_from_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    # torchvision checks each batch file against the official MD5 sums, which a
    # made-up file cannot match; only that check is switched off here.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    folder = tmp_path / "d" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        batch = {"data": rows[name], "labels": [3, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))

    data = load_dataset("cifar10", tmp_path / "d", tmp_path / "c", download=False)
    assert data.classes == names
    assert data.train_x.shape == (10, 3, 32, 32) and data.train_x.is_contiguous()
    # A CIFAR row is the red plane, then green, then blue: exactly [3, 32, 32].
    assert np.array_equal(data.train_x[:2].numpy(), rows["data_batch_1"].reshape(2, 3, 32, 32))
    assert np.array_equal(data.test_x.numpy(), rows["test_batch"].reshape(2, 3, 32, 32))
    assert data.test_y.tolist() == [3, 7]


# ----------------------------------------------------------------- imagefolder

def make_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=(3, 2), size=(6, 5), mode="RGB"):
    """train/<class>/i.png and test/<class>/i.png with random pixels; returns {path: array}."""
    rng = np.random.default_rng(2)
    written = {}
    for split, n in zip(("train", "test"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(arr, mode).save(root / split / c / f"{i}.png")
                written[root / split / c / f"{i}.png"] = arr
    return written


def make_tar(path: Path, folder: Path, arcname: str, extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_imagefolder_from_folder(tmp_path):
    written = make_image_folder(tmp_path / "img")
    data = load_dataset("imagefolder", tmp_path / "img", tmp_path / "c")
    assert data.classes == ["cat", "dog", "eel"]
    assert data.train_x.shape == (9, 3, 5, 6) and data.test_x.shape == (6, 3, 5, 6)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    first = written[tmp_path / "img" / "train" / "cat" / "0.png"]
    assert np.array_equal(data.train_x[0].permute(1, 2, 0).numpy(), first)
    # Adding an image changes the source, so the cache is not reused.
    Image.fromarray(first).save(tmp_path / "img" / "train" / "dog" / "9.png")
    assert len(load_dataset("imagefolder", tmp_path / "img", tmp_path / "c").train_y) == 10


def test_imagefolder_greyscale_gives_one_channel(tmp_path):
    make_image_folder(tmp_path / "g", mode="L")
    data = load_dataset("imagefolder", tmp_path / "g", tmp_path / "c")
    assert data.train_x.shape == (9, 1, 5, 6)
    # One RGBA image (alpha dropped) and one BMP (PIL fallback) make it all RGB.
    Image.new("RGBA", (6, 5), (10, 20, 30, 40)).save(tmp_path / "g" / "train" / "cat" / "rgba.png")
    Image.new("RGB", (6, 5), (50, 60, 70)).save(tmp_path / "g" / "test" / "dog" / "z.bmp")
    mixed = load_dataset("imagefolder", tmp_path / "g", tmp_path / "c")
    assert mixed.train_x.shape == (10, 3, 5, 6)
    assert mixed.train_x[3, :, 0, 0].tolist() == [10, 20, 30]
    assert mixed.test_x[-3, :, 0, 0].tolist() == [50, 60, 70]
    grey = mixed.train_x[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], data.train_x[0, 0])


def test_imagefolder_from_tar_gz_with_wrapper_folder(tmp_path):
    make_image_folder(tmp_path / "img")
    from_dir = load_dataset("imagefolder", tmp_path / "img", tmp_path / "c")
    archive = make_tar(tmp_path / "img.tar.gz", tmp_path / "img", arcname="wrapped")
    from_tar = load_dataset("imagefolder", archive, tmp_path / "c")
    assert from_tar.fingerprint == from_dir.fingerprint
    assert str(archive) in from_tar.source
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".pt", ".pt"]  # nothing but tensors kept


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize("member,expect", [
    (lambda: _file("../evil.png", b"x"), "'..'"),
    (lambda: _file("/tmp/nnstudy-evil.png", b"x"), "absolute"),
    (lambda: (_link("train/cat/link.png", "../../../../outside.png"), None), "outside the archive"),
    (lambda: (_link("train/cat/abs.png", "/etc/passwd"), None), "outside the archive"),
    (lambda: (_link("train/cat/hard.png", "../outside.png", tarfile.LNKTYPE), None), "outside the archive"),
    (lambda: (_link("train/cat/dev", "", tarfile.CHRTYPE), None), "device"),
])
def test_unsafe_archive_is_refused(tmp_path, member, expect):
    make_image_folder(tmp_path / "img")
    info, data = member()
    archive = make_tar(tmp_path / "bad.tar.gz", tmp_path / "img", arcname=".", extra=[(info, data)])
    before = files_under(tmp_path)
    raises_user_error(lambda: load_dataset("imagefolder", archive, tmp_path / "c"), archive, info.name, expect)
    assert files_under(tmp_path) - before <= {tmp_path / "c"}  # no cache entry, nothing extracted
    assert not Path("/tmp/nnstudy-evil.png").exists() and not (tmp_path.parent / "outside.png").exists()


def test_link_inside_archive_is_followed(tmp_path):
    make_image_folder(tmp_path / "img")
    archive = make_tar(tmp_path / "ok.tar", tmp_path / "img", arcname=".",
                       extra=[(_link("train/cat/copy.png", "0.png"), None)])
    data = load_dataset("imagefolder", archive, tmp_path / "c")
    assert len(data.train_y) == 10 and torch.equal(data.train_x[0], data.train_x[3])


def test_imagefolder_errors_name_the_path(tmp_path):
    root = tmp_path / "img"
    make_image_folder(root)
    cache = tmp_path / "c"
    load = lambda: load_dataset("imagefolder", root, cache)  # noqa: E731

    (root / "train" / "fox").mkdir()
    (root / "test" / "fox").mkdir()
    raises_user_error(load, root / "train" / "fox", "empty")
    (root / "train" / "fox").rmdir()
    Image.new("RGB", (6, 5)).save(root / "test" / "fox" / "0.png")
    raises_user_error(load, root / "test", "only in test: ['fox']")
    (root / "test" / "fox" / "0.png").unlink()
    (root / "test" / "fox").rmdir()

    bad = root / "train" / "dog" / "x.png"
    bad.write_bytes(os.urandom(200))
    raises_user_error(load, bad, "not a readable image")
    bad.write_text("hello")
    bad.rename(root / "train" / "dog" / "notes.txt")
    raises_user_error(load, root / "train" / "dog" / "notes.txt")
    (root / "train" / "dog" / "notes.txt").unlink()

    Image.new("RGB", (7, 7)).save(root / "test" / "eel" / "big.png")
    raises_user_error(load, root / "test" / "eel" / "big.png", "7x7", "6x5")
    (root / "test" / "eel" / "big.png").unlink()

    (root / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    assert len(load().train_y) == 9

    for sub in (root / "test").iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    (root / "test").rmdir()
    raises_user_error(load, root / "test", "missing")
    raises_user_error(lambda: load_dataset("imagefolder", tmp_path / "nowhere", cache), tmp_path / "nowhere", "does not exist")
    (tmp_path / "flat").mkdir()
    raises_user_error(lambda: load_dataset("imagefolder", tmp_path / "flat", cache), tmp_path / "flat", "no train/ and test/")


def test_corrupt_image_in_archive_names_member(tmp_path):
    make_image_folder(tmp_path / "img")
    (tmp_path / "img" / "test" / "cat" / "0.png").write_bytes(os.urandom(100))
    archive = make_tar(tmp_path / "a.tgz", tmp_path / "img", arcname="top")
    raises_user_error(lambda: load_dataset("imagefolder", archive, tmp_path / "c"), f"{archive}:top/test/cat/0.png")
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:300])
    raises_user_error(lambda: load_dataset("imagefolder", truncated, tmp_path / "c"), truncated)


@pytest.mark.skipif(os.environ.get("NNSTUDY_REAL_DATA") != "1" or not (SHARED / "cifar10-jpeg.tar.gz").is_file(),
                    reason="set NNSTUDY_REAL_DATA=1 to decode the real CIFAR-10 archive (about 10 s)")
def test_real_cifar10_archive(tmp_path):
    data = load_dataset("imagefolder", SHARED / "cifar10-jpeg.tar.gz", tmp_path)
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert data.classes[0] == "airplane" and data.train_y.bincount().tolist() == [5000] * 10
    assert load_dataset("imagefolder", SHARED / "cifar10-jpeg.tar.gz", tmp_path).fingerprint == data.fingerprint


def test_failed_download_leaves_no_new_folders(tmp_path, monkeypatch):
    import torchvision

    # Offline, whatever the machine: the only mirror is a closed local port.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    target = tmp_path / "not-yet" / "data"
    with pytest.raises(UserError, match="MNIST"):
        load_dataset("mnist", target, tmp_path / "cache", download=True)
    assert not (tmp_path / "not-yet").exists()


def test_channel_stats_match_torch_over_several_chunks_and_follow_subsets():
    gen = torch.Generator().manual_seed(0)
    # 5000 images: more than one float64 chunk; channels with different spreads.
    x = torch.randint(0, 256, (5000, 3, 4, 4), generator=gen, dtype=torch.uint8)
    x[:, 1] //= 4
    y = torch.arange(5000) % 2
    data = ImageData("synthetic", ["a", "b"], x, y, x[:10].clone(), y[:10].clone(), "f" * 64, "test")
    mean, std = data.channel_stats()
    ref = x.double().div(255)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), ref.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), ref.std(dim=(0, 2, 3)))
    assert std[1] < std[0] / 2
    sub = data.subset(100, None)
    torch.testing.assert_close(torch.tensor(sub.channel_stats()[0], dtype=torch.float64),
                               sub.train_x.double().div(255).mean(dim=(0, 2, 3)))

"""Omniglot: loading the zips, the cache, the split, the task sampler, errors; one test on the real data."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minimaml.tasks import Omniglot, TaskBatch
from minimaml.tasks import omniglot

REAL_DATA = Path(__file__).parents[3] / "shared" / "data" / "omniglot"
# A small Omniglot: 12 characters in 3 alphabets over the two zips, 20 drawings each.
ALPHABETS = {"images_background": {"Alpha": 4, "Beta": 3}, "images_evaluation": {"Gamma": 5}}


def drawing(c, d):
    """105x105 1-bit, ink black as in Omniglot: a horizontal bar (rows 8c+4..8c+8, columns 0..30)
    says which character, a vertical bar (columns 35+3d..38+3d, rows 0..40) which drawing."""
    image = Image.new("1", (105, 105), 1)
    ImageDraw.Draw(image).rectangle([0, 8 * c + 4, 29, 8 * c + 7], fill=0)
    ImageDraw.Draw(image).rectangle([35 + 3 * d, 0, 37 + 3 * d, 39], fill=0)
    return image


def write_zip(path, entries):
    """A zip of {name: PIL image}, written in reverse order so that the loader has to sort."""
    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(entries, reverse=True):
            buf = io.BytesIO()
            entries[name].save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())


def make_omniglot(folder, drawings=20, top=None):
    folder.mkdir(parents=True, exist_ok=True)
    c = 0
    for zip_top, alphabets in ALPHABETS.items():
        entries = {}
        for alphabet, n in alphabets.items():
            for i in range(n):
                for d in range(drawings):
                    entries[f"{top or zip_top}/{alphabet}/character{i + 1:02d}/{c:04d}_{d + 1:02d}.png"] = drawing(c, d)
                c += 1
        write_zip(folder / f"{zip_top}.zip", entries)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_omniglot(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def no_user_folders(tmp_path, monkeypatch):
    """Every test caches into its own temporary folder and finds data only where it is told."""
    monkeypatch.setenv("MINIMAML_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIMAML_DATA", raising=False)


def small(data, **kw):
    return Omniglot(data, **{"ways": 3, "num_train": 8, "num_val": 2, **kw})


def centre(profile):
    """Centre of ink along one row/column of a 28-pixel image, in 105-pixel input coordinates."""
    return 3.75 * (np.sum(profile * np.arange(28)) / np.sum(profile) + 0.5)


def test_reads_the_zips_in_order_resized_and_inverted(data):
    fam = small(data)
    assert fam.images.shape == (12, 20, 28, 28) and fam.images.dtype == np.uint8
    assert fam.names[:5] == ["images_background/Alpha/character01", "images_background/Alpha/character02",
                             "images_background/Alpha/character03", "images_background/Alpha/character04",
                             "images_background/Beta/character01"]
    assert fam.names[7:] == [f"images_evaluation/Gamma/character0{i}" for i in range(1, 6)]
    for c in range(12):
        for d in range(20):
            image = fam.images[c, d].astype(float)
            # Output column 1 (input columns 3.75..7.5) crosses only the character's bar, output
            # row 0 (input rows 0..3.75) only the drawing's bar: averaging keeps their centres
            # to within a pixel (the bars are 8 and 3 pixels apart).
            assert abs(centre(image[:, 1]) - (8 * c + 6)) < 1
            assert abs(centre(image[0, :]) - (36.5 + 3 * d)) < 1
    assert fam.images[:, :, 27, :].max() == 0                        # background is 0 (inverted)
    assert fam.images.max() == 255 and len(np.unique(fam.images)) > 2  # grey at the bars' edges


def test_cache_is_written_once_reused_and_rebuilt_for_another_resize(data, tmp_path, monkeypatch):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir())
    first = small(data)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npy"]
    assert sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir()) == before  # data folder untouched

    decode = omniglot._decode
    monkeypatch.setattr(omniglot, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))
    again = small(data)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.names == first.names

    calls = []
    monkeypatch.setattr(omniglot, "_decode", lambda *a: calls.append(a) or decode(*a))
    nearest = small(data, resize="nearest")
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("omniglot-*.npy"))) == 2
    assert set(np.unique(nearest.images)) == {0, 255}       # nearest neighbour keeps 1-bit images binary
    assert np.abs(nearest.images.astype(int) - first.images).max() > 0
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_folders_from_arguments_and_environment(data, tmp_path, monkeypatch):
    small(data, cache=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("omniglot-*.npy"))) == 1
    monkeypatch.delenv("MINIMAML_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    parent = tmp_path / "parent"
    make_omniglot(parent / "omniglot")                    # MINIMAML_DATA may name the parent folder
    monkeypatch.setenv("MINIMAML_DATA", str(parent))
    assert len(Omniglot(num_train=8, num_val=2).names) == 12
    assert len(list((tmp_path / "xdg" / "minimaml").glob("omniglot-*.npy"))) == 1


def test_split_is_seeded_disjoint_and_complete(data):
    fam = small(data)
    train, val, test = (fam.characters(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 4)
    assert sorted(np.concatenate([train, val, test])) == list(range(12))
    np.testing.assert_array_equal(small(data).characters("test"), test)
    assert not np.array_equal(small(data, split_seed=1).characters("test"), test)
    fam.characters("train")[:] = -1                      # a copy: the split cannot be edited by accident
    np.testing.assert_array_equal(fam.characters("train"), train)


def test_sample_draws_distinct_characters_and_drawings_rotated_per_class(data):
    fam = small(data)
    T, N, K, Q = 64, 3, 2, 3
    b = fam.sample(T, K, Q, rng=0)
    assert isinstance(b, TaskBatch) and b.num_tasks == T
    assert b.xs.shape == (T, N * K, 784) and b.xq.shape == (T, N * Q, 784)
    assert b.ys.shape == (T, N * K) and b.yq.shape == (T, N * Q)
    assert b.xs.dtype == b.xq.dtype == np.float32 and b.ys.dtype == b.yq.dtype == np.int64
    assert 0 <= b.xs.min() and b.xq.max() <= 1 and b.xs.max() == 1
    assert b.characters.shape == b.rotations.shape == (T, N) and b.drawings.shape == (T, N, K + Q)
    assert np.isin(b.characters, fam.characters("train")).all()
    assert all(len(set(row)) == N for row in b.characters)
    assert all(len(set(row)) == K + Q for row in b.drawings.reshape(-1, K + Q))
    assert set(b.rotations.ravel()) == {0, 1, 2, 3}
    # Labels: class c of every task is K support then Q query images of character characters[t, c].
    np.testing.assert_array_equal(b.ys, np.tile(np.repeat(np.arange(N), K), (T, 1)))
    np.testing.assert_array_equal(b.yq, np.tile(np.repeat(np.arange(N), Q), (T, 1)))
    images = np.concatenate([b.xs.reshape(T, N, K, 28, 28), b.xq.reshape(T, N, Q, 28, 28)], axis=2)
    for t in range(T):
        for c in range(N):
            for j in range(K + Q):
                original = fam.images[b.characters[t, c], b.drawings[t, c, j]]
                assert not np.array_equal(np.rot90(original), original)   # so the check below can fail
                np.testing.assert_array_equal(images[t, c, j] * 255,
                                              np.rot90(original, b.rotations[t, c]).astype(np.float32))


def test_labels_are_a_fresh_permutation_per_task(data):
    b = small(data).sample(200, 1, 1, rng=1)
    assert (np.diff(b.characters, axis=1) < 0).any(axis=1).mean() > 0.5   # labels not in index order
    labels_of = {ch: set(np.nonzero(b.characters == ch)[1]) for ch in np.unique(b.characters)}
    assert all(labels == {0, 1, 2} for labels in labels_of.values())   # each character gets every label


def test_sample_is_reproducible_and_splits_are_kept_apart(data):
    fam = small(data)
    a, b = fam.sample(5, 1, 4, rng=42), fam.sample(5, 1, 4, rng=42)
    np.testing.assert_array_equal(a.xs, b.xs)
    np.testing.assert_array_equal(a.xq, b.xq)
    np.testing.assert_array_equal(a.characters, b.characters)
    rng = np.random.default_rng(42)
    c, d = fam.sample(5, 1, 4, rng), fam.sample(5, 1, 4, rng)
    np.testing.assert_array_equal(a.xs, c.xs)
    assert not np.array_equal(c.xs, d.xs)
    two_way = small(data, ways=2)                           # val has only 2 characters
    for split in ("train", "val", "test"):
        assert np.isin(two_way.sample(20, 1, 1, rng=0, split=split).characters, fam.characters(split)).all()


@pytest.mark.parametrize("args, kwargs, message", [
    ((3, 1, 1), {"split": "val"}, "ways=3 but split 'val' has only 2 characters"),
    ((3, 10, 11), {}, "k_support + k_query = 10 + 11 = 21 but each character has only 20 drawings"),
    ((3, 1, 1), {"split": "training"}, "split must be one of ('train', 'val', 'test'), got 'training'"),
    ((0, 1, 1), {}, "num_tasks must be a positive int, got 0"),
    ((3, -1, 1), {}, "k_support must be a positive int, got -1"),
    ((3, 1, 1.5), {}, "k_query must be a positive int, got 1.5"),
])
def test_bad_sample_arguments(data, args, kwargs, message):
    with pytest.raises(ValueError) as err:
        small(data).sample(*args, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"ways": 0}, "ways must be a positive int, got 0"),
    ({"resize": "bilinear"}, "resize must be one of ('box', 'nearest'), got 'bilinear'"),
    ({"num_train": 12}, "need num_val < num_train < number of characters"),
    ({"num_val": 8}, "need num_val < num_train < number of characters"),
    ({"num_val": 0}, "num_val must be a positive int, got 0"),
])
def test_bad_constructor_arguments(data, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        small(data, **kwargs)


def test_missing_data_says_what_to_put_where(tmp_path, monkeypatch):
    (tmp_path / "images_background.zip").write_bytes(b"")        # one zip alone is not enough
    for args in ((tmp_path,), ()):
        if not args:
            monkeypatch.setenv("MINIMAML_DATA", str(tmp_path))
        with pytest.raises(FileNotFoundError) as err:
            Omniglot(*args)
        message = str(err.value)
        for words in ("images_background.zip", "images_evaluation.zip", str(tmp_path), "--data DIR",
                      "MINIMAML_DATA"):
            assert words in message
    monkeypatch.delenv("MINIMAML_DATA")
    with pytest.raises(FileNotFoundError, match="images_evaluation.zip .* MINIMAML_DATA"):
        Omniglot()


@pytest.mark.parametrize("layout", ["19 drawings", "wrong top folder", "no folders"])
def test_a_zip_that_is_not_omniglot(tmp_path, layout):
    if layout == "19 drawings":
        folder, found = make_omniglot(tmp_path / "d", drawings=19), "found 7 characters with [19] drawings"
    elif layout == "wrong top folder":
        folder, found = make_omniglot(tmp_path / "d", top="omniglot"), "found 0 characters with [] drawings"
    else:
        folder, found = make_omniglot(tmp_path / "d"), "found 0 characters with [] drawings"
        write_zip(folder / "images_background.zip", {f"{i}.png": drawing(0, i) for i in range(20)})
    with pytest.raises(ValueError) as err:
        Omniglot(folder, num_train=3, num_val=1)
    assert str(err.value) == (f"{folder / 'images_background.zip'} is not an Omniglot zip: expected "
                              f"images_background/<Alphabet>/<character>/<drawing>.png with 20 drawings "
                              f"per character, {found}")


def test_the_real_omniglot(tmp_path):
    fam = Omniglot(REAL_DATA, cache=tmp_path)
    assert fam.images.shape == (1623, 20, 28, 28)
    assert sum(name.startswith("images_background/") for name in fam.names) == 964
    assert 0.05 < fam.images.mean() / 255 < 0.12                   # ink is the minority: inverted
    assert [len(fam.characters(s)) for s in ("train", "val", "test")] == [1100, 100, 423]
    b = fam.sample(4, 1, 5, rng=0, split="test")
    assert b.xs.shape == (4, 5, 784) and b.xq.shape == (4, 25, 784)
    assert 0 <= b.xq.min() and b.xq.max() <= 1 and np.isin(b.characters, fam.characters("test")).all()

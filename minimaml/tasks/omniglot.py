"""Omniglot N-way K-shot classification tasks (Lake et al. 2015; MAML paper §5.2).

The data: the two standard zips ``images_background.zip`` (964 characters) and
``images_evaluation.zip`` (659 characters) of github.com/brendenlake/omniglot (``python/``),
laid out as ``images_background/<Alphabet>/characterNN/IIII_DD.png``: 1623 characters × 20
drawings, each a 105×105 1-bit PNG (ink black). Nothing is downloaded. The folder holding the
zips is ``Omniglot(data=DIR)``, else the environment variable ``MINIMAML_DATA``; either may also
be a parent folder with the zips in ``omniglot/`` (e.g. ``MINIMAML_DATA=/work/shared/data``).

Preprocessing, done once and cached: every PNG is decoded from the zips (in memory), resized to
28×28 and inverted so that ink = 1 and background = 0 (as MAML's released code does,
``1.0 - image``). ``resize``:

    "box"      (default) 1-bit -> 8-bit grey, then Image.BOX: each output pixel is the mean of
               the input pixels whose centres lie in its 3.75×3.75 area, i.e. the fraction of ink
               there, so thin strokes survive as grey.
    "nearest"  what MAML's ``resize_images.py`` effectively does: it calls
               ``resize((28, 28), LANCZOS)`` on the mode-"1" image, and Pillow always uses
               nearest-neighbour for mode "1", so the images stay binary and thin strokes may break.

The result, images (1623, 20, 28, 28) uint8 (0..255) and the character names, is saved as
``omniglot-<key>.npy`` / ``.json`` in ``MINIMAML_CACHE``, else ``$XDG_CACHE_HOME/minimaml``, else
``~/.cache/minimaml`` (never in the data folder, which may be read-only). The key is the sha256 of
both zips' bytes, the resize method and a format version, so changing any of them rebuilds it.

Characters are ordered by (zip: background then evaluation, alphabet, character folder),
drawings by file name. Split (the MAML paper and code): one shuffle of the 1623 characters seeded
by ``split_seed``; the first ``num_train`` = 1200 are meta-training characters, of which the last
``num_val`` = 100 form "val" and the first 1100 "train"; the other 423 are "test".
"""

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..files import cache_dir, write_atomic
from .base import TaskBatch, _positive_int, as_rng

ZIPS = ("images_background.zip", "images_evaluation.zip")
DRAWINGS = 20                 # drawings per character (20 people drew each one)
SIZE = 28                     # side of the resized images, as in the MAML paper
RESIZE_METHODS = ("box", "nearest")
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1            # bump when the cached arrays change meaning


class OmniglotNotFound(FileNotFoundError):
    """The Omniglot zips are not where they were looked for."""


class Omniglot:
    """N-way K-shot Omniglot tasks: ``ways`` characters per task, labels 0..N−1, images 28×28.

    ``sample`` returns a TaskBatch: xs (T, N·K, 784) float32 in [0, 1] (ink = 1), ys (T, N·K) int64,
    xq (T, N·Q, 784), yq (T, N·Q); the support and query sets are grouped by class label.
    ``images`` (1623, 20, 28, 28) uint8 and ``names`` (1623 "zip/alphabet/character" strings) hold
    the data; ``characters(split)`` the global character indices of a split.

    ``data``: the folder of the zips (default MINIMAML_DATA); ``cache``: the cache folder (default
    as above); ``num_train``: meta-training characters, "val" included (train = num_train − num_val).
    """

    def __init__(self, data=None, ways=5, resize="box", split_seed=0, num_train=1200, num_val=100,
                 cache=None):
        if resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
        self.ways = _positive_int("ways", ways)
        self.resize = resize
        num_train = _positive_int("num_train", num_train)
        num_val = _positive_int("num_val", num_val)
        self.images, self.names = _load(_find_zips(data), resize, cache)
        C = len(self.names)
        if not num_val < num_train < C:
            raise ValueError(f"need num_val < num_train < number of characters so that train, val and "
                             f"test are non-empty, got num_val={num_val}, num_train={num_train}, {C} characters")
        order = np.random.default_rng(split_seed).permutation(C)
        self.split_seed = split_seed
        self._splits = {"train": order[:num_train - num_val],
                        "val": order[num_train - num_val:num_train],
                        "test": order[num_train:]}

    def __repr__(self):
        sizes = ", ".join(f"{s}={len(self._splits[s])}" for s in SPLITS)
        return f"Omniglot(ways={self.ways}, resize={self.resize!r}, split_seed={self.split_seed}: {sizes})"

    def characters(self, split):
        """The global indices (into ``images`` and ``names``) of the characters of a split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self._splits[split].copy()

    def sample(self, num_tasks, k_support, k_query, rng=None, split="train"):
        """T tasks of N = ``ways`` distinct characters of ``split``; per class K support and Q query
        distinct drawings, all turned by one random multiple of 90° (np.rot90, as in MAML's code).
        Label c of task t is character params["characters"][t, c]: a random order per task.
        Returns TaskBatch xs (T, N·K, 784), ys (T, N·K), xq (T, N·Q, 784), yq (T, N·Q) and params
        characters (T, N), rotations (T, N) in {0, 1, 2, 3}, drawings (T, N, K + Q) (support first)."""
        T = _positive_int("num_tasks", num_tasks)
        K = _positive_int("k_support", k_support)
        Q = _positive_int("k_query", k_query)
        pool = self.characters(split)
        N = self.ways
        if N > len(pool):
            raise ValueError(f"ways={N} but split {split!r} has only {len(pool)} characters")
        if K + Q > DRAWINGS:
            raise ValueError(f"k_support + k_query = {K} + {Q} = {K + Q} but each character has only "
                             f"{DRAWINGS} drawings")
        rng = as_rng(rng)
        # The first columns of an argsort of uniform keys are an ordered sample without replacement:
        # distinct characters in a random order (which is the random label permutation), and
        # distinct drawings, all tasks at once.
        chars = pool[rng.random((T, len(pool))).argsort(axis=1)[:, :N]]            # (T, N)
        draws = rng.random((T, N, DRAWINGS)).argsort(axis=2)[:, :, :K + Q]         # (T, N, K+Q)
        rotations = rng.integers(0, 4, size=(T, N))
        x = self.images[chars[:, :, None], draws]                                  # (T, N, K+Q, 28, 28)
        for k in (1, 2, 3):           # one vectorised rot90 per angle, not one per class
            turn = rotations == k
            x[turn] = np.rot90(x[turn], k, axes=(-2, -1))
        x = x.reshape(T, N, K + Q, SIZE * SIZE).astype(np.float32) / np.float32(255)
        y = np.broadcast_to(np.arange(N)[None, :, None], (T, N, K + Q))
        params = {"characters": chars, "rotations": rotations, "drawings": draws}
        return TaskBatch(x[:, :, :K].reshape(T, N * K, -1), y[:, :, :K].reshape(T, N * K),
                         x[:, :, K:].reshape(T, N * Q, -1), y[:, :, K:].reshape(T, N * Q), params)


def _find_zips(data):
    """The two zip paths in ``data`` (or MINIMAML_DATA), or in its ``omniglot/`` subfolder."""
    folder = data if data is not None else os.environ.get("MINIMAML_DATA")
    if folder is not None:
        for place in (Path(folder), Path(folder) / "omniglot"):
            if all((place / name).is_file() for name in ZIPS):
                return [place / name for name in ZIPS]
    where = f"in {Path(folder).resolve()} (or its omniglot/ subfolder)" if folder else "in a folder"
    raise OmniglotNotFound(
        f"Omniglot data not found: put {ZIPS[0]} and {ZIPS[1]} (github.com/brendenlake/omniglot, "
        f"python/) {where} and choose that folder with --data DIR or the MINIMAML_DATA environment "
        f"variable; nothing is downloaded")


def _cache_dir(cache):
    return Path(cache) if cache is not None else cache_dir()


def _load(zips, resize, cache):
    """images (C, 20, 28, 28) uint8 and names (C,) from the cache, decoding the zips on a miss."""
    key = hashlib.sha256()
    for path in zips:
        key.update(path.read_bytes())
    key.update(f"resize={resize};version={FORMAT_VERSION}".encode())
    stem = _cache_dir(cache) / f"omniglot-{key.hexdigest()[:16]}"
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.is_file() and meta.is_file():
        names = json.loads(meta.read_text())["names"]
        images = np.load(npy)
        if images.shape == (len(names), DRAWINGS, SIZE, SIZE):
            return images, names
    images, names = _decode(zips, resize)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(meta, lambda f: f.write(json.dumps({"resize": resize, "names": names}).encode()))
    write_atomic(npy, lambda f: np.save(f, images))
    return images, names


def _decode(zips, resize):
    """Decode, resize and invert every drawing: images (C, 20, 28, 28) uint8 (ink 255), names."""
    from PIL import Image         # imported here: only needed on a cache miss

    images, names = [], []
    for path in zips:
        top = path.stem           # "images_background": the folder inside the zip
        pattern = re.compile(rf"{top}/([^/]+)/([^/]+)/([^/]+\.png)")
        with zipfile.ZipFile(path) as zf:
            groups = {}           # (alphabet, character) -> its PNG entries
            for entry in zf.namelist():
                m = pattern.fullmatch(entry)
                if m:
                    groups.setdefault(m.group(1, 2), []).append(entry)
            counts = {len(v) for v in groups.values()}
            if not groups or counts != {DRAWINGS}:
                raise ValueError(f"{path} is not an Omniglot zip: expected {top}/<Alphabet>/<character>/"
                                 f"<drawing>.png with {DRAWINGS} drawings per character, found "
                                 f"{len(groups)} characters with {sorted(counts)} drawings")
            for alphabet, character in sorted(groups):
                names.append(f"{top}/{alphabet}/{character}")
                for entry in sorted(groups[alphabet, character]):
                    image = Image.open(io.BytesIO(zf.read(entry))).convert("1")
                    if resize == "box":
                        image = image.convert("L").resize((SIZE, SIZE), Image.BOX)
                    else:
                        image = image.resize((SIZE, SIZE), Image.NEAREST).convert("L")
                    images.append(255 - np.asarray(image))
    return np.stack(images).reshape(len(names), DRAWINGS, SIZE, SIZE), names

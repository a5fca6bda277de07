"""Shared by the GPU tests: the emulated kernel's libraries go to a temporary folder.

``minimaml.gpu.emulated`` caches the compiled kernel libraries in ``$MINIMAML_CACHE_DIR``, by
default the user's ``~/.cache/minimaml``. Tests must leave that folder alone, so every test here
runs with ``MINIMAML_CACHE_DIR`` pointing at one temporary folder for the whole session: each
configuration is compiled once per test run (a few seconds each), and never into the user's cache.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def emulated_cache_dir(tmp_path_factory):
    """The temporary folder that ``emulated.cache_dir()`` returns during the tests."""
    folder = tmp_path_factory.mktemp("minimaml-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIMAML_CACHE_DIR", str(folder))
        yield folder

"""Shared by all tests: minimaml's cache folder is a temporary one.

minimaml caches the Omniglot arrays and the CPU builds of the CUDA kernels in ``$MINIMAML_CACHE``
(default ``~/.cache/minimaml``). Tests must leave the user's folder alone, so the whole session runs
with ``MINIMAML_CACHE`` pointing at one temporary folder (inherited by the notebooks' kernels): each
kernel configuration is compiled, and the Omniglot cache built, once per test run.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """The temporary folder that ``minimaml.files.cache_dir()`` returns during the tests."""
    folder = tmp_path_factory.mktemp("minimaml-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIMAML_CACHE", str(folder))
        yield folder

"""Files: every file minimaml writes (checkpoints, the Omniglot cache) goes through ``write_atomic``,
so it survives crashes, and every cache lives in one folder, ``cache_dir()``."""
import os
import tempfile
from pathlib import Path


def cache_dir():
    """minimaml's cache folder (the Omniglot arrays, the CPU builds of the CUDA kernels):
    $MINIMAML_CACHE, else $XDG_CACHE_HOME/minimaml, else ~/.cache/minimaml."""
    if os.environ.get("MINIMAML_CACHE"):
        return Path(os.environ["MINIMAML_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minimaml"


def write_atomic(path, write, remove_stale=False):
    """Write a file so that ``path`` holds either its old content or the whole new one, even after a
    crash or a power cut: write(f) into a temporary file beside it (``.<name>.tmp-XXXX``), fsync,
    rename over ``path``, fsync the folder. ``remove_stale``: first delete the temporaries of ``path``
    that a killed process left (only for files that one process at a time writes, e.g. a run's
    checkpoint; not for a cache that two processes may build at once)."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{name}.tmp-"
    for stale in os.listdir(folder) if remove_stale else ():
        if stale.startswith(prefix):
            try:
                os.remove(os.path.join(folder, stale))
            except OSError:
                pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Flush a folder's entries (the rename) to disk, as databases do; a no-op where folders cannot
    be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(folder):
    """Create ``folder`` if needed and make sure a file can be written in it: raises OSError naming
    the folder now, rather than at a run's first checkpoint."""
    os.makedirs(folder, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write to the folder {folder!r}: {e.strerror}") from None

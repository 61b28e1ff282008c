"""Atomic file replacement for checkpoints: a temporary file next to the target, then os.replace.

Written to a temporary file in the same directory, flushed and fsynced, given the old file's
mode (or the umask's for a new file, as ``open`` would), moved over the target with
os.replace, then the directory is fsynced: a crash at any moment leaves the old file or the
new one. Temporary names stay short for long file names, and temporaries of writers that
died are removed (where this user may remove them).
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile

_NAME_LIMIT = 160            # characters of the target's name kept in a temporary's name


def replace_atomically(path: str, write) -> None:
    """Call ``write(binary_stream)`` on a temporary file, then move it over ``path``.

    A symlink is followed, as ``open(path, "w")`` would: the file it points to is replaced
    (in that file's folder), and the link stays a link.
    """
    if os.path.islink(path):
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(path)
    mode = _mode_for(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), mode)      # mkstemp makes 0600: keep what readers had
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _mode_for(path):
    """The permission bits of the file being replaced, or 0666 less the umask for a new one."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:                                          # Linux: read it without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _owner_tag(path) -> str:
    """".<name>" for the temporaries of ``path``; a long name is cut and a hash of it added,
    so the temporary's name is never longer than the limit a file system puts on names."""
    name = os.path.basename(path)
    if len(name) > _NAME_LIMIT:
        name = f"{name[:_NAME_LIMIT - 17]}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"
    return f".{name}"


def _temporary_prefix(path):
    return f"{_owner_tag(path)}.{os.getpid()}."


def _remove_stale_temporaries(path):
    """Delete temporary files left by writers of ``path`` whose process no longer exists.

    One that this user may not delete (another user's, in a sticky folder such as /tmp) is
    left where it is: it does not stop the save.
    """
    directory = os.path.dirname(os.path.abspath(path))
    owner = _owner_tag(path)
    for entry in os.listdir(directory):
        if not entry.endswith(".tmp"):
            continue
        # ".<name>.<pid>.<random>.tmp", read from the right: <name> itself may contain dots
        parts = entry[:-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != owner or not parts[1].isdigit() or _process_alive(int(parts[1])):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return                       # some systems cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

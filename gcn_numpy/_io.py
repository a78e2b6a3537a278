"""Files written whole or not at all."""

import os

__all__ = ["OutputError", "atomic_write"]


class OutputError(OSError):
    """An output that cannot be written; the message names the file and the reason."""


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary binary file beside ``path``, sync it and rename
    it over ``path``; on any failure remove the temporary file, leave ``path`` as it was
    and raise :class:`OutputError`.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write(path, lambda f: f.write(b"whole"))
    >>> open(path).read()
    'whole'
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        reason = e.strerror or str(e) or type(e).__name__
        raise OutputError(f"cannot write {path}: {reason}") from None

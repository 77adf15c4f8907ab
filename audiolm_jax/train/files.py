"""Workdirs on local disk or object storage (gs://, s3://): pod runs keep checkpoints, reports
and TensorBoard events in a bucket every worker can read.

Orbax writes checkpoints to such URLs itself; everything else the trainer and workflows write
goes through these helpers, which use `etils.epath` (TensorFlow's GCS filesystem on a pod, where
TF is installed with the data pipeline). Local paths stay plain file I/O. Logs are the one
exception: object stores do not append, so each worker logs to local disk (`local_log_dir`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any


def is_remote(path: str) -> bool:
    """True for URLs such as gs://bucket/run (object storage), False for local paths."""
    return "://" in str(path)


def join(directory: str, *names: str) -> str:
    """os.path.join for local paths, "/"-joined for URLs."""
    if is_remote(directory):
        return "/".join([directory.rstrip("/"), *names])
    return os.path.join(directory, *names)


def isdir(path: str) -> bool:
    if is_remote(path):
        from etils import epath

        return epath.Path(path).is_dir()
    return os.path.isdir(path)


def move(src: str, dest: str) -> None:
    """Moves a file or folder (in a bucket: a copy then a delete, done by epath's rename)."""
    if is_remote(src) or is_remote(dest):
        from etils import epath

        epath.Path(src).rename(dest)
    else:
        import shutil

        shutil.move(src, dest)


def makedirs(path: str) -> None:
    """mkdir -p, locally or in a bucket (where it is a no-op for most stores)."""
    if is_remote(path):
        from etils import epath

        epath.Path(path).mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str = "r"):
    """open() for local paths and URLs alike (URLs: no append; "ab" becomes "wb")."""
    if not is_remote(path):
        return open(path, mode)
    from etils import epath

    return epath.Path(path).open(mode.replace("a", "w"))


def write_json(directory: str, name: str, obj: Any) -> str:
    """Writes `obj` as indented JSON to directory/name (values JSON cannot hold: str())."""
    path = join(directory, name)
    makedirs(directory)
    with open_file(path, "w") as f:
        f.write(json.dumps(obj, indent=2, default=str))
    return path


def local_log_dir(workdir: str) -> str:
    """Where this worker's log file goes: the workdir itself, or for a bucket workdir
    $AUDIOLM_LOG_DIR (default ~/audiolm_logs) / the URL made into a folder name."""
    if not is_remote(workdir):
        return workdir
    root = os.environ.get("AUDIOLM_LOG_DIR") or os.path.expanduser("~/audiolm_logs")
    return os.path.join(root, re.sub(r"[^A-Za-z0-9._-]+", "_", workdir).strip("_"))

"""Workdir I/O: local paths stay plain files; bucket URLs are joined with "/" and their logs go
to local disk (object stores cannot append)."""

import json

from audiolm_jax.train import files


def test_local_paths_are_plain_files(tmp_path):
    path = files.write_json(str(tmp_path / "a" / "b"), "r.json", {"x": 1, "p": tmp_path})
    assert json.loads(open(path).read()) == {"x": 1, "p": str(tmp_path)}
    with files.open_file(str(tmp_path / "log"), "a") as f:
        f.write("one\n")
    with files.open_file(str(tmp_path / "log"), "a") as f:
        f.write("two\n")
    assert (tmp_path / "log").read_text() == "one\ntwo\n"
    files.move(str(tmp_path / "a"), str(tmp_path / "c"))
    assert files.isdir(str(tmp_path / "c" / "b")) and not files.isdir(str(tmp_path / "a"))
    assert files.local_log_dir(str(tmp_path)) == str(tmp_path)


def test_bucket_workdirs_join_with_slashes_and_log_locally(monkeypatch, tmp_path):
    assert files.is_remote("gs://bucket/run") and not files.is_remote("/data/run")
    assert files.join("gs://bucket/run/", "checkpoints", "5") == "gs://bucket/run/checkpoints/5"
    monkeypatch.setenv("AUDIOLM_LOG_DIR", str(tmp_path))
    assert files.local_log_dir("gs://bucket/run") == str(tmp_path / "gs_bucket_run")

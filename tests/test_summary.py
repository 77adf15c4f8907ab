"""TensorBoard events written without TensorFlow are valid TFRecords that read back."""

from audiolm_jax.train.summary import EventWriter, crc32c, progress_bar, read_scalars


def test_crc32c_known_answer():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)


def test_event_file_round_trip(tmp_path):
    writer = EventWriter(str(tmp_path))
    writer.scalars(1, {"loss": 2.5, "lr": 1e-3})
    writer.scalars(2, {"loss": 2.0})
    writer.close()
    (path,) = tmp_path.iterdir()
    got = read_scalars(str(path))
    assert got == [(1, "loss", 2.5), (1, "lr", 0.0010000000474974513), (2, "loss", 2.0)]


def test_progress_bar():
    assert progress_bar(5, 10, width=10) == "[#####-----]  50%"

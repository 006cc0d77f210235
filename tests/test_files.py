"""Atomic writes: an interrupted write leaves the old file and no temporary one."""

import pandas as pd
import pytest

from kronos_sk._files import write_atomically


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "forecast.csv"
    target.write_text("old")

    def dies_half_way(tmp):
        tmp.write_text("half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, dies_half_way)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.csv"]


def test_the_new_file_replaces_the_old_and_keeps_its_format(tmp_path):
    target = tmp_path / "paths.parquet"
    target.write_text("old")
    frame = pd.DataFrame({"close": [1.0, 2.0]})
    assert write_atomically(target, frame.to_parquet) == target
    pd.testing.assert_frame_equal(pd.read_parquet(target), frame)
    assert [p.name for p in tmp_path.iterdir()] == ["paths.parquet"]

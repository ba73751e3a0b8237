"""RunWriter's trim as a function: exactly ``count`` rows stay on disk, in order, the shard that
crosses ``count`` is cut and the shards past it are removed (added for the mutation check of
issue 20: two mutations of ``_trim_to`` survived the run-directory tests)."""
from __future__ import annotations

import torch

from feassample.rundir.storage import RunWriter, shard_files


def _rows(start: int, size: int) -> dict:
    codes = torch.arange(start, start + size, dtype=torch.float64).unsqueeze(1).repeat(1, 2)
    return {"codes": codes, "values": codes[:, :1] * 10}


def _on_disk(writer: RunWriter) -> list[torch.Tensor]:
    return [torch.load(f, weights_only=True)["codes"] for f in shard_files(writer.shards)]


def test_trim_cuts_the_crossing_shard_and_removes_the_later_ones(tmp_path):
    writer = RunWriter(tmp_path, {"run": "trim"})
    for start in (0, 5, 10):
        writer.append(_rows(start, 5))
    writer.trim(7)
    shards = _on_disk(writer)
    assert [len(s) for s in shards] == [5, 2]             # one cut, one removed, none empty
    assert torch.cat(shards)[:, 0].tolist() == list(range(7))
    writer.append(_rows(7, 3))                            # appending goes on after the cut
    assert torch.cat(_on_disk(writer))[:, 0].tolist() == list(range(10)) and writer.written == 10


def test_a_resumed_writer_trims_to_its_state_count(tmp_path):
    writer = RunWriter(tmp_path, {"run": "trim"})
    writer.append(_rows(0, 4))
    writer.append(_rows(4, 4))                            # written, then killed before the state
    resumed = RunWriter(tmp_path, {"run": "trim"}, written=6)
    assert torch.cat(_on_disk(resumed))[:, 0].tolist() == list(range(6)) and resumed.written == 6

"""``flows.tasks.ScatteredArguments``: large task arguments go to a Dask cluster once, small ones as they are."""
import numpy as np
import pandas as pd

from poisonguard.pipelines.flows.tasks import SCATTER_BYTES, ScatteredArguments


class RecordingClient:
    def __init__(self):
        self.sent = []

    def scatter(self, value, hash=True):
        assert hash is False  # hashing a million rows' content costs more than sending them
        self.sent.append(value)
        return f"future-{len(self.sent)}"


def test_each_large_argument_is_scattered_once_and_small_ones_pass_as_they_are():
    large_array = np.zeros(SCATTER_BYTES // 8)
    large_table = pd.DataFrame({"x": np.zeros(SCATTER_BYTES // 8)})
    small = np.zeros(3)
    client = RecordingClient()
    scattered = ScatteredArguments(client)
    assert scattered.arguments(("outlier.ecod", large_table, small, large_array, 7)) == (
        "outlier.ecod", "future-1", small, "future-2", 7)
    # The same objects given to another task: the futures already sent.
    assert scattered.arguments((large_array, large_table)) == ("future-2", "future-1")
    # An equal but distinct table is another value.
    assert scattered.arguments((large_table.copy(),)) == ("future-3",)
    assert len(client.sent) == 3 and client.sent[0] is large_table


def test_one_byte_short_is_not_scattered():
    client = RecordingClient()
    almost = np.zeros(SCATTER_BYTES - 1, dtype=np.uint8)
    assert ScatteredArguments(client).arguments((almost,))[0] is almost and not client.sent


def test_without_a_dask_client_the_arguments_are_unchanged():
    args = (np.zeros(SCATTER_BYTES),)
    assert ScatteredArguments(None).arguments(args) is args

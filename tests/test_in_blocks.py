"""In-blocks of the executors placement (issue 16): what a rating block sends and receives, built once per fit."""

import numpy as np
import pytest

from sparknmf.ratings.in_blocks import out_lists, read_out_lists, received_index


def test_received_index_is_the_sorted_distinct_columns_and_each_rating_position():
    rng = np.random.default_rng(3)
    for size, other in ((0, 5), (1, 1), (50, 7), (10_000, 300), (1_000, 1_000_000)):
        cols = rng.integers(0, other, size)
        index, local = received_index(cols)
        expected, inverse = np.unique(cols, return_inverse=True)  # the oracle: sort and rank
        np.testing.assert_array_equal(index, expected)
        np.testing.assert_array_equal(local, inverse.ravel())
        assert index.dtype == np.int32 and local.dtype == np.int32
        np.testing.assert_array_equal(index[local], cols)


def test_docstring_example():
    # user block 0: u0 -> i0, i3; u1 -> i1 (items in blocks of 2)
    indptr, cols = np.array([0, 2, 3]), np.array([0, 3, 1])
    assert [(dst, rows.tolist()) for dst, rows in read_out_lists(out_lists(indptr, cols, 2))] == [(0, [0, 1]),
                                                                                                   (1, [0])]
    index, local = received_index(cols)
    assert index.tolist() == [0, 1, 3] and local.tolist() == [0, 2, 1]


@pytest.mark.parametrize("silent", [[0, 4, 9], [3], []])
def test_an_item_block_receives_its_index_from_the_user_blocks_out_lists(silent):
    """The user rows the user blocks' out-lists send an item block, by source block, are that block's ``index``."""
    rng = np.random.default_rng(len(silent))
    n, m, step, other_step = 12, 9, 4, 3
    rated = rng.random((n, m)) < 0.3
    rated[silent, :] = False  # users who rated nothing are sent nowhere
    for item_key in range(m // other_step):
        items = rated.T[item_key * other_step : (item_key + 1) * other_step]
        index, local = received_index(np.nonzero(items)[1])  # the item block's columns: users
        received = []
        for src in range(-(-n // step)):
            block = rated[src * step : (src + 1) * step]
            indptr = np.r_[0, np.cumsum(block.sum(axis=1))]
            received += [src * step + rows for dst, rows in read_out_lists(out_lists(indptr, np.nonzero(block)[1],
                                                                                     other_step)) if dst == item_key]
        np.testing.assert_array_equal(np.concatenate(received) if received else [], index)
        np.testing.assert_array_equal(index[local], np.nonzero(items)[1])


"""ST-GCN spatial partition, checked against a hand-worked example."""

from __future__ import annotations

import numpy as np
import pytest

from models.contract.layouts import BUILTIN, Layout
from models.net.graph import center_distance, hop_distance, spatial_adjacency


def test_chain_of_four_by_hand():
    # 0 - 1 - 2 - 3 with the centre at 1: hops from the centre are [1, 0, 1, 2].
    lay = Layout("chain4", ("a", "b", "c", "d"), ((0, 1), (1, 2), (2, 3)), center=1)
    np.testing.assert_array_equal(center_distance(lay), [1, 0, 1, 2])
    a = spatial_adjacency(lay)
    # A[k, j, i]: neighbour j feeds root i; each root's neighbourhood (itself included) is averaged,
    # so every entry of column i is 1 / (degree of i + 1): 1/2, 1/3, 1/3, 1/2.
    h, t = 1 / 2, 1 / 3
    expected_self = np.diag([h, t, t, h])
    expected_centripetal = np.zeros((4, 4))
    expected_centripetal[1, 0] = h  # root 0 hears 1 (nearer the centre)
    expected_centripetal[1, 2] = t  # root 2 hears 1
    expected_centripetal[2, 3] = h  # root 3 hears 2
    expected_centrifugal = np.zeros((4, 4))
    expected_centrifugal[0, 1] = t  # root 1 (the centre) hears 0 and 2, both farther out
    expected_centrifugal[2, 1] = t
    expected_centrifugal[3, 2] = t  # root 2 hears 3
    assert a.shape == (3, 4, 4) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], expected_self, atol=1e-7)
    np.testing.assert_allclose(a[1], expected_centripetal, atol=1e-7)
    np.testing.assert_allclose(a[2], expected_centrifugal, atol=1e-7)


def test_hop_distance_chain():
    lay = Layout("chain4", ("a", "b", "c", "d"), ((0, 1), (1, 2), (2, 3)), center=1)
    hop = hop_distance(lay, max_hop=2)
    assert hop[0, 2] == 2 and hop[0, 0] == 0 and hop[0, 1] == 1 and np.isinf(hop[0, 3])


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_partition_columns_sum_to_one(name: str):
    lay = BUILTIN[name]
    a = spatial_adjacency(lay)
    assert a.shape == (3, lay.num_joints, lay.num_joints)
    np.testing.assert_allclose(a.sum(axis=(0, 1)), 1.0, atol=1e-6)
    assert (a >= 0).all()
    # every bone appears in exactly one subset in each direction, and the self subset holds the diagonal
    support = (a > 0).sum(axis=0)
    assert support.max() == 1
    for i, j in lay.edges:
        assert support[i, j] == 1 and support[j, i] == 1
    assert (np.diag(a[0]) > 0).all()
    assert a[1].sum() > 0 and a[2].sum() > 0


def test_custom_layout_with_two_components():
    # An isolated joint still gets its self loop; its distance is put one beyond the farthest reachable joint.
    lay = Layout("split", ("a", "b", "c"), ((0, 1),), center=0)
    np.testing.assert_array_equal(center_distance(lay), [0, 1, 2])
    a = spatial_adjacency(lay)
    np.testing.assert_allclose(a.sum(axis=(0, 1)), 1.0, atol=1e-6)
    assert a[0, 2, 2] == 1.0

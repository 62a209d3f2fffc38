"""Attention-mask rules: causal prefix (optionally bidirectional images), block-causal action groups."""

from __future__ import annotations

import torch

from automot.model.masks import action_group_ids, action_mask, joint_action_rows, prefix_mask


def test_action_groups_follow_the_paper_rule():
    groups = action_group_ids(num_scene=2, num_decision=3, num_route=4, num_waypoints=2)
    m = action_mask(groups)
    scene, state, dec, route, wps = [torch.nonzero(groups == g).flatten() for g in range(5)]
    assert bool(m[dec][:, dec].all())  # bidirectional inside the decision group
    assert bool(m[dec][:, state].all()) and bool(m[dec][:, scene].all())  # decision sees the state
    assert not bool(m[dec][:, route].any()) and not bool(m[dec][:, wps].any())
    assert bool(m[route][:, dec].all()) and bool(m[wps][:, dec].all())  # planning sees decision
    assert not bool(m[route][:, wps].any())
    assert not bool(m[scene][:, state].any())


def test_action_rows_see_only_valid_prefix():
    valid = torch.tensor([[False, True, True], [True, True, True]])
    groups = action_group_ids(0, 1, 1, 1)
    rows = joint_action_rows(valid, groups)
    assert rows.shape == (2, 6, 3 + 6)
    assert not bool(rows[0, :, 0].any())
    assert bool(rows[1, :, :3].all())


def test_prefix_mask_causal_and_padding():
    valid = torch.tensor([[False, True, True, True]])
    m = prefix_mask(valid)
    assert not bool(m[0, 2, 3])  # no look-ahead
    assert bool(m[0, 3, 1])
    assert not bool(m[0, 3, 0])  # padding is never attended...
    assert bool(m[0, 0, 0])  # ...except by itself, which keeps padded rows finite


def test_prefix_mask_image_blocks_bidirectional():
    ids = torch.tensor([[9, 3, 5, 5, 5, 4, 9, 3, 5, 4, 9]])  # text, <vs> img img img <ve>, text, <vs> img <ve>, text
    valid = torch.ones_like(ids, dtype=torch.bool)
    causal = prefix_mask(valid, ids, 3, 4, image_bidirectional=False)
    bidir = prefix_mask(valid, ids, 3, 4, image_bidirectional=True)
    assert not bool(causal[0, 2, 4])
    assert bool(bidir[0, 2, 4]) and bool(bidir[0, 1, 5])  # whole first image block sees itself
    assert not bool(bidir[0, 2, 6])  # never the following text
    assert not bool(bidir[0, 3, 8])  # never a later image
    assert not bool(bidir[0, 0, 1])

"""The grouped split (core/data/splits.py): groups never straddle it, it stays stratified and seeded."""
import random
from pathlib import Path

from resnet_app.core.data.splits import grouped_split


def clip_samples(clips_per_class=(6, 6, 9), frames=(1, 12), seed=0):
    """(samples, groups): each clip is a group of 1 to 12 frames of one class; samples in scan order."""
    rng = random.Random(seed)
    samples, groups = [], []
    for label, clips in enumerate(clips_per_class):
        for clip in range(clips):
            group = [Path(f"/data/c{label}/clip{clip:02d}_{f:02d}.png") for f in range(rng.randint(*frames))]
            samples += [(path, label) for path in group]
            groups.append(group)
    return samples, groups


def test_no_group_straddles_the_split_and_each_class_keeps_about_its_share():
    samples, groups = clip_samples()
    for seed in range(30):
        train, val, done = grouped_split(samples, 0.2, seed, groups)
        assert sorted(train + val) == sorted(samples)
        val_paths = {path for path, _ in val}
        for group in groups:
            assert set(group) <= val_paths or not (set(group) & val_paths), f"a clip straddles (seed {seed})"
        for label in range(3):
            size = sum(1 for _, lab in samples if lab == label)
            held = sum(1 for _, lab in val if lab == label)
            assert 1 <= held < size  # some validation, never the whole class
            assert abs(held - 0.2 * size) <= 12  # within a clip of the share
        assert done.groups == sum(len(g) >= 2 for g in groups)
    assert grouped_split(samples, 0.2, 3, groups) == grouped_split(samples, 0.2, 3, groups)
    assert grouped_split(samples, 0.2, 3, groups)[1] != grouped_split(samples, 0.2, 4, groups)[1]


def test_overlapping_groups_join_and_a_group_across_classes_goes_whole():
    samples = [(Path(f"/d/{c}/{i}.png"), c) for c in range(2) for i in range(10)]
    a, b = [samples[0][0], samples[1][0]], [samples[1][0], samples[2][0]]  # share an image: one unit
    across = [samples[3][0], samples[15][0]]  # a labelling mistake: both go one way
    for seed in range(20):
        _, val, done = grouped_split(samples, 0.3, seed, [a, b, across])
        val_paths = {path for path, _ in val}
        assert len(val_paths & {*a, *b}) in (0, 3) and len(val_paths & set(across)) in (0, 2)
        assert (done.groups, done.images) == (2, 5)


def test_a_class_that_is_mostly_one_group_is_named():
    samples, groups = clip_samples(clips_per_class=(1, 6), frames=(10, 10))
    extra = [(Path("/data/c0/other.png"), 0)]  # one image of class 0 outside its only clip
    _, val, done = grouped_split(samples + extra, 0.2, 0, groups)
    assert done.lopsided == [(0, 10, 11)]
    assert not any(label == 0 and path in groups[0] for path, label in val)  # the clip trains, whole


def test_zero_share_and_no_groups():
    samples, _ = clip_samples()
    train, val, done = grouped_split(samples, 0.0, 0, [])
    assert (train, val, done.groups) == (samples, [], 0)


def test_a_class_without_groups_is_split_as_the_random_split_splits_it():
    from resnet_app.core.data.splits import stratified_split

    samples, groups = clip_samples(clips_per_class=(5, 5))
    singles = [(Path(f"/data/c2/{i:02d}.png"), 2) for i in range(17)]
    for seed in range(5):
        grouped_val = grouped_split(samples + singles, 0.2, seed, groups)[1]
        random_val = stratified_split(samples + singles, 0.2, seed)[1]
        assert [s for s in grouped_val if s[1] == 2] == [s for s in random_val if s[1] == 2]

"""wording.nearest_name: the one rule of "did you mean" for names that must match exactly (data.exclude
entries, folder names, a config's choices): the name the same but for case, else the closest by
spelling, case ignored, as spelt among the names."""

from peerdistill.wording import nearest_name


def test_a_name_the_same_but_for_case_is_given_as_spelt_among_the_names():
    assert nearest_name("Images", ["masks", "images"]) == "images"
    assert nearest_name("IMAGES", ["Images", "images"]) == "Images"  # the first of names alike but for case


def test_else_the_closest_spelling_case_ignored_at_the_callers_cutoff():
    assert nearest_name("imgaes", ["masks", "images"]) == "images"
    assert nearest_name("KD-MLL", ["kd", "kd-ml"]) == "kd-ml"
    assert nearest_name("frame_01.PNG", ["frame_001.png"]) == "frame_001.png"
    assert nearest_name("frame_9", ["frame_001.png"], cutoff=0.75) is None


def test_nothing_close_gives_none():
    assert nearest_name("labels", ["images", "masks"]) is None
    assert nearest_name("images", []) is None

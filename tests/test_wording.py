"""How messages list things: a few of many, then '...'."""

from peerdistill.wording import first_few


def test_first_few_names_a_few_then_says_there_are_more():
    assert first_few(["a", "b", "c"]) == "a, b, c"
    assert first_few(["a", "b", "c", "d"]) == "a, b, c, ..."
    assert first_few([2, 3, 4, 5, 6], 10) == "2, 3, 4, 5, 6"
    assert first_few(["x.png", "y.png"], 1, quoted=True) == "'x.png', ..."
    assert first_few([]) == ""

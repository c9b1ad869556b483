"""predict's inputs: which array of an .npz is read, and what is said of inputs unlike the
training images (another size), read directly with read_inputs on tiny files."""

import warnings

import numpy as np
from PIL import Image

from peerdistill.errors import PeerdistillWarning
from peerdistill.predict_inputs import read_inputs


def _said(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = read_inputs(*args, **kwargs)
    return read, [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, PeerdistillWarning)]


def test_an_input_of_another_width_alone_is_said_to_be_resized(tmp_path):
    # 8 rows as the model's input, 12 columns instead of 8: resized all the same, and said
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / "wide.png")
    read, said = _said([str(tmp_path / "wide.png")], 1, (8, 8))
    assert read.images[0].shape == (8, 8, 1) and read.sizes == [(8, 12)]
    assert said == [f"1 of 1 inputs differ in size from the model's 8x8 (height x width) input and were resized to it "
                    f"(e.g. '{tmp_path / 'wide.png'}', 8x12): check they are the kind of image it learnt from"]


def test_an_npz_holding_images_and_test_images_is_read_by_its_images(tmp_path):
    # "images" is the array predict names first; test_images is for a dataset's archive without it
    images, test_images = np.full((2, 8, 8), 0.25, np.float32), np.full((3, 8, 8), 0.75, np.float32)
    np.savez(tmp_path / "both.npz", test_images=test_images, images=images)
    read, _ = _said([str(tmp_path / "both.npz")], 1, (8, 8))
    assert len(read.images) == 2 and np.all(np.stack(read.images) == 0.25)



def test_an_npz_without_images_to_predict_names_the_arrays_it_holds(tmp_path):
    import re

    import pytest

    from peerdistill.errors import DataError

    np.savez(tmp_path / "other.npz", x_test=np.zeros((2, 8, 8), np.float32), y_test=np.zeros(2))
    with pytest.raises(DataError, match=re.escape("other.npz' has no 'images' or 'test_images' array (it holds "
                                                  "['x_test', 'y_test']): save the images to predict under one")):
        read_inputs([str(tmp_path / "other.npz")], 1, (8, 8))

def test_the_originals_of_npz_images_are_kept_at_their_own_size(tmp_path):
    # --overlays draws on each input as it is: an .npz image resized for the model is not its original
    images = np.random.default_rng(0).random((2, 48, 40)).astype(np.float32)
    np.savez(tmp_path / "x.npz", images=images)
    read, _ = _said([str(tmp_path / "x.npz")], 1, (24, 20), keep_originals=True, trained_resized=True)
    assert [a.shape for a in read.images] == [(24, 20, 1)] * 2
    assert [a.shape for a in read.originals] == [(48, 40, 1)] * 2
    assert np.array_equal(read.originals[1][..., 0], images[1])


def test_an_input_named_twice_is_read_once_and_said(tmp_path):
    # a folder given twice, and one of its files again by another spelling of its path: three images
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 8, 8), np.float32))
    inputs = [str(tmp_path), str(tmp_path / "." / "1.png"), str(tmp_path), str(tmp_path / "x.npz"), str(tmp_path / "x.npz")]
    read, said = _said(inputs, 1, (8, 8))
    assert read.names == [str(tmp_path / f"{i}.png") for i in range(3)] + [f"{tmp_path / 'x.npz'}[{i}]" for i in range(2)]
    assert said == [f"3 inputs were named more than once (e.g. '{tmp_path / '1.png'}'): each is predicted once"]
    _, once = _said([str(tmp_path / "0.png")], 1, (8, 8))
    assert once == []
    (tmp_path / "link.png").symlink_to(tmp_path / "0.png")  # a link is an input of its own, as named
    read, said = _said([str(tmp_path / "0.png"), str(tmp_path / "link.png")], 1, (8, 8))
    assert read.names == [str(tmp_path / "0.png"), str(tmp_path / "link.png")] and said == []


def _folder_with_damaged_files(tmp_path, good: int, damaged: int):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(good):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"good{i}.png")
    for i in range(damaged):
        (folder / f"bad{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))  # a PNG's signature, then nothing
    return folder


def test_every_unreadable_input_is_named_in_one_message_with_the_way_to_predict_the_others(tmp_path):
    import pytest

    from peerdistill.errors import DataError

    folder = _folder_with_damaged_files(tmp_path, good=2, damaged=2)
    with pytest.raises(DataError) as caught:
        read_inputs([str(folder)], 1, (8, 8))
    lines = str(caught.value).split("\n")
    assert lines[0] == "2 of 4 inputs cannot be read:"
    assert [line.split("'")[1] for line in lines[1:3]] == [str(folder / "bad0.png"), str(folder / "bad1.png")]
    assert all(line.startswith("  - cannot read image") and "the file is damaged" in line for line in lines[1:3])
    assert lines[3] == "skip_unreadable=True predicts the other 2 and lists these in a CSV beside the predictions"


def test_skip_unreadable_reads_the_others_and_keeps_why_each_was_left_out(tmp_path):
    folder = _folder_with_damaged_files(tmp_path, good=3, damaged=1)
    read, _ = _said([str(folder)], 1, (8, 8), skip_unreadable=True)
    assert read.names == [str(folder / f"good{i}.png") for i in range(3)]
    assert [a[0, 0, 0] for a in read.images] == [0.0, 40 / 255, 80 / 255]
    assert [name for name, _ in read.unreadable] == [str(folder / "bad0.png")]
    assert read.unreadable[0][1].startswith(f"cannot read image '{folder / 'bad0.png'}'")


def test_skip_unreadable_still_stops_when_no_input_can_be_read(tmp_path):
    import pytest

    from peerdistill.errors import DataError

    folder = _folder_with_damaged_files(tmp_path, good=0, damaged=12)
    with pytest.raises(DataError) as caught:
        read_inputs([str(folder)], 1, (8, 8), skip_unreadable=True)
    lines = str(caught.value).split("\n")
    # eight spelt out, the rest counted, and no advice to skip: nothing would be left to predict
    assert lines[0] == "12 of 12 inputs cannot be read:" and len(lines) == 10 and lines[-1] == "  - and 4 more"


def test_an_unreadable_npz_is_one_more_input_left_out_or_named(tmp_path):
    # review 45e: a damaged .npz stopped predict at once, even with skip_unreadable, and hid the images
    # already found unreadable
    import pytest

    from peerdistill.errors import DataError

    folder = _folder_with_damaged_files(tmp_path, good=1, damaged=1)
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError) as caught:
        read_inputs([str(folder), str(tmp_path / "bad.npz")], 1, (8, 8))
    lines = str(caught.value).split("\n")
    assert lines[0] == "2 of 3 inputs cannot be read:" and "bad0.png" in lines[1] and "bad.npz" in lines[2]
    read, _ = _said([str(folder), str(tmp_path / "bad.npz")], 1, (8, 8), skip_unreadable=True)
    assert read.names == [str(folder / "good0.png")]
    assert [name for name, _ in read.unreadable] == [str(folder / "bad0.png"), str(tmp_path / "bad.npz")]


def test_a_float_image_with_nan_or_infinite_pixels_is_unreadable_by_name(tmp_path):
    """Review 51c: one NaN pixel spreads through every convolution; predict wrote a class of NaN
    probabilities, an all-background mask, without a word."""
    import pytest

    from peerdistill.errors import DataError

    good = np.full((8, 8), 0.5, np.float32)
    Image.fromarray(good, mode="F").save(tmp_path / "good.tif")
    for name, value in (("nan.tif", np.nan), ("inf.tif", np.inf)):
        bad = good.copy()
        bad[3, 4] = value
        Image.fromarray(bad, mode="F").save(tmp_path / name)
    read, _ = _said([str(tmp_path)], 1, (8, 8), skip_unreadable=True)
    assert read.names == [str(tmp_path / "good.tif")]
    assert {name: why for name, why in read.unreadable} == {
        str(tmp_path / n): f"image '{tmp_path / n}' holds NaN or infinite pixel values: replace them (e.g. "
        "numpy.nan_to_num with the value the scanner gives no signal) and save it again, or remove it"
        for n in ("inf.tif", "nan.tif")}
    arrays = np.zeros((3, 8, 8), np.float32)
    arrays[2, 1, 1] = np.nan
    np.savez(tmp_path / "x.npz", images=arrays)
    with pytest.raises(DataError, match=r"inputs contain NaN or infinite values, in 1 of 3 samples \(index 2\): "
                                        r"replace them \(e.g. numpy.nan_to_num\) or leave those samples out"):
        read_inputs([str(tmp_path / "x.npz")], 1, (8, 8))


def test_links_to_files_that_are_not_there_are_named_not_left_out(tmp_path):
    """Review 51c: a folder of links into a drive not mounted lost those images in silence."""
    import os

    import pytest

    from peerdistill.errors import DataError

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "real.png")
    os.symlink(tmp_path / "gone" / "x.png", tmp_path / "link.png")
    os.symlink(tmp_path / "gone" / "notes.txt", tmp_path / "notes.txt")  # (not an image: no matter)
    said = (f"input '{tmp_path / 'link.png'}' is a symbolic link to '{tmp_path / 'gone' / 'x.png'}', which does not "
            "exist: mount or copy what it points to, or remove the link")
    with pytest.raises(DataError) as caught:  # named among the inputs that cannot be read, with the way past them
        read_inputs([str(tmp_path)], 1, (8, 8))
    assert str(caught.value) == (f"{said}\nskip_unreadable=True predicts the other 1 and lists these in a CSV beside "
                                 "the predictions")
    with pytest.raises(DataError) as caught:
        read_inputs([str(tmp_path / "link.png")], 1, (8, 8))
    assert str(caught.value) == said
    (tmp_path / "link.png").unlink()  # a stale link without a suffix (to a folder, say) is no image (review 51k)
    os.symlink(tmp_path / "gone", tmp_path / "latest")
    assert read_inputs([str(tmp_path)], 1, (8, 8)).names == [str(tmp_path / "real.png")]


def _links_that_lead_nowhere(folder):
    """good.png, and beside it a link to what does not exist, one to itself and two to each other."""
    import os

    folder.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 40, np.uint8)).save(folder / "good.png")
    os.symlink(folder / "unmounted" / "x.png", folder / "broken.png")
    os.symlink("self.png", folder / "self.png")
    os.symlink("b.png", folder / "a.png")
    os.symlink("a.png", folder / "b.png")
    return folder


def test_skip_unreadable_leaves_out_broken_and_looping_links_and_names_each(tmp_path):
    # a broken link, or a link to itself or round a cycle, stopped predict even with skip_unreadable
    folder = _links_that_lead_nowhere(tmp_path / "in")
    read, _ = _said([str(folder)], 1, (8, 8), skip_unreadable=True)
    assert read.names == [str(folder / "good.png")]
    why = dict(read.unreadable)
    assert list(why) == [str(folder / n) for n in ("a.png", "b.png", "broken.png", "self.png")]
    assert why[str(folder / "broken.png")] == (f"input '{folder / 'broken.png'}' is a symbolic link to "
                                               f"'{folder / 'unmounted' / 'x.png'}', which does not exist: mount or "
                                               "copy what it points to, or remove the link")
    assert why[str(folder / "self.png")] == (f"input '{folder / 'self.png'}' is a symbolic link in a loop: it points "
                                             "to 'self.png', which leads back to it (at once or through other links), "
                                             "so it reaches no file: point it at the image, or remove it")
    assert why[str(folder / "a.png")].startswith(f"input '{folder / 'a.png'}' is a symbolic link in a loop: it points "
                                                 "to 'b.png'")
    # named directly, beside an image that can be read, they are left out alike
    read, _ = _said([str(folder / "good.png"), str(folder / "self.png"), str(folder / "broken.png")], 1, (8, 8),
                    skip_unreadable=True)
    assert read.names == [str(folder / "good.png")]
    assert [name for name, _ in read.unreadable] == [str(folder / "self.png"), str(folder / "broken.png")]


def test_without_skip_unreadable_a_looping_link_is_named_as_a_loop_not_as_missing(tmp_path):
    import pytest

    from peerdistill.errors import DataError

    folder = _links_that_lead_nowhere(tmp_path / "in")
    with pytest.raises(DataError) as caught:
        read_inputs([str(folder / "good.png"), str(folder / "self.png")], 1, (8, 8))
    assert str(caught.value) == (f"input '{folder / 'self.png'}' is a symbolic link in a loop: it points to "
                                 "'self.png', which leads back to it (at once or through other links), so it reaches "
                                 "no file: point it at the image, or remove it\nskip_unreadable=True predicts the "
                                 "other 1 and lists these in a CSV beside the predictions")
    with pytest.raises(DataError) as caught:  # a folder of them: every one named, each as what it is
        read_inputs([str(folder)], 1, (8, 8))
    lines = str(caught.value).split("\n")
    assert lines[0] == "4 of 5 inputs cannot be read:"
    assert ["in a loop" in line for line in lines[1:5]] == [True, True, False, True]
    assert "does not exist" in lines[3] and not any("does not exist" in line for line in lines[1:3] + lines[4:5])


def test_a_dead_link_in_a_subfolder_does_not_stop_predict(tmp_path):
    # the subfolder is not read: its images are only counted for a warning
    folder = tmp_path / "in"
    _links_that_lead_nowhere(folder / "sub")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "top.png")
    read, said = _said([str(folder)], 1, (8, 8))
    assert read.names == [str(folder / "top.png")] and read.unreadable == ()
    assert said == [f"subfolder(s) of '{folder}' hold images that are not read (sub): predict reads the images "
                    "directly in a folder; give the subfolders as inputs too"]

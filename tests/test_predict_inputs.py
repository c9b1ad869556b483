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
    assert said == [f"1 of 1 inputs differ in size from the model's 8x8 input and were resized to it (e.g. "
                    f"'{tmp_path / 'wide.png'}', 8x12): check they are the kind of image it learnt from"]


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

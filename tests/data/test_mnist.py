"""mnist5k and rotation: shapes, ranges, a split that does not depend on the run's seed."""

import torch

from backdoorguard.data import load_dataset
from backdoorguard.data import mnist
from backdoorguard.data.rotation import MAX_ANGLE, rotate


def test_mnist5k_shapes_range_and_stratified_split():
    data = load_dataset("mnist5k")
    assert data.train.x.shape == (4000, 1, 28, 28) and data.test.x.shape == (1000, 1, 28, 28)
    assert data.train.x.min() == 0.0 and data.train.x.max() == 1.0
    assert torch.bincount(data.test.y, minlength=10).tolist() == [100] * 10
    assert torch.bincount(data.train.y, minlength=10).tolist() == [400] * 10
    assert data.task.num_outputs == 10 and data.task.input_range == (0.0, 1.0)


def test_mnist5k_split_ignores_the_global_seed():
    first = mnist.mnist5k_arrays()
    mnist.mnist5k_arrays.cache_clear()
    torch.manual_seed(12345)
    second = mnist.mnist5k_arrays()
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # train and test are different images (no test image leaks into training)
    train = {bytes(row.numpy()) for row in (first[0] * 255).round().to(torch.uint8).flatten(1)}
    test = [bytes(row.numpy()) for row in (first[2] * 255).round().to(torch.uint8).flatten(1)]
    assert sum(t in train for t in test) == 0


def test_rotate_turns_counter_clockwise():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 1, 4] = 1.0                       # a dot above the centre
    turned = rotate(image, torch.tensor([90.0]))[0, 0]
    row, col = divmod(int(turned.argmax()), 9)
    assert (row, col) == (4, 1)                   # now left of the centre
    assert torch.allclose(rotate(image, torch.tensor([0.0])), image, atol=1e-6)


def test_rotation_labels_are_the_angles_of_the_images():
    data = load_dataset("rotation")
    assert data.train.x.shape == (4000, 1, 28, 28) and data.train.y.shape == (4000, 1)
    assert data.task.kind == "regression" and data.task.tol == 5.0
    assert data.task.label_range == ((-MAX_ANGLE, MAX_ANGLE),)
    assert data.train.y.abs().max() <= MAX_ANGLE and data.train.y.std() > 30
    # Undoing the labelled angle brings each digit back to its upright (deskewed)
    # original; turning the wrong way does not.
    upright = rotate(mnist.mnist5k_arrays()[2][:50], torch.zeros(50), deskew=True)
    x, angle = data.test.x[:50], data.test.y[:50, 0]
    back = rotate(x, -angle)
    wrong = rotate(x, angle)
    error_back = (back - upright).abs().flatten(1).mean(1)
    error_wrong = (wrong - upright).abs().flatten(1).mean(1)
    big = angle.abs() > 10
    assert (error_back[big] < error_wrong[big]).all()


def test_deskew_makes_a_slanted_stroke_vertical_and_centred():
    image = torch.zeros(1, 1, 28, 28)
    for row in range(6, 22):                      # a stroke leaning right, off centre
        image[0, 0, row, 10 + (21 - row) // 2] = 1.0
    upright = rotate(image, torch.zeros(1), deskew=True)[0, 0]
    columns = (upright > 0.3).nonzero()[:, 1]
    assert columns.max() - columns.min() <= 1      # one column: vertical
    centre = (upright.sum(0) * torch.arange(28)).sum() / upright.sum()
    assert abs(float(centre) - 13.5) < 0.6         # centre of mass at the image centre

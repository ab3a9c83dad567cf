"""ListOps and Pathfinder generators: checked independently of their own code, then read by the loaders."""
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from spikessm.data.generators.listops import generate_listops, write_listops
from spikessm.data.generators.pathfinder import STYLES, draw_pathfinder, write_pathfinder
from spikessm.data.lra.listops import tokenize
from spikessm.data.lra.pathfinder import read_metadata
from spikessm.data.registry import get_task
from spikessm.errors import UserError


def evaluate(tokens: list[str]) -> int:
    """Prefix evaluation of a ListOps token list (``[MAX 2 9 X``) with a stack, independent of the generator."""
    stack = []
    for token in tokens:
        if token == "X":
            args = []
            while not isinstance(stack[-1], str):
                args.append(stack.pop())
            op = stack.pop()
            stack.append({"[MIN": min, "[MAX": max, "[MED": lambda a: int(np.median(a)),
                          "[SM": lambda a: sum(a) % 10}[op](args))
        else:
            stack.append(token if token.startswith("[") else int(token))
    assert len(stack) == 1
    return stack[0]


def test_listops_labels_lengths_uniqueness():
    samples = generate_listops(400, min_length=20, max_length=80, seed=1)
    assert len(samples) == len({text for text, _ in samples}) == 400
    for text, value in samples:
        tokens = tokenize(text)
        assert 20 < len(tokens) < 80
        assert evaluate(tokens) == value
        assert text.count("(") == text.count(")")
    labels = np.bincount([value for _, value in samples], minlength=10)
    assert (labels > 0).all()  # every class occurs
    assert generate_listops(400, min_length=20, max_length=80, seed=1) == samples  # seeded


def test_listops_text_form_matches_lra():
    # LRA nests every (function, argument) pair: [MAX 2 9] is ( ( ( [MAX 2 ) 9 ) ] )
    samples = generate_listops(50, min_length=2, max_length=5, seed=0)  # only [OP d d] fits: 400 exist
    three = [text for text, _ in samples if len(tokenize(text)) == 4]
    assert three and all(t.startswith("( ( ( [") and t.endswith(" ) ] )") for t in three)


def test_listops_default_lengths_are_lras():
    samples = generate_listops(20, seed=0)
    assert all(500 < len(tokenize(text)) < 2000 for text, _ in samples)


def test_write_listops_is_read_by_the_loader(tmp_path):
    folder = write_listops(tmp_path, train=30, val=5, test=5, min_length=10, max_length=40, seed=2)
    lines = (folder / "basic_train.tsv").read_text().splitlines()
    assert folder.name == "listops-1000" and lines[0] == "Source\tTarget" and len(lines) == 31
    task = get_task("listops")
    splits = task.load(task.options, tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 5, 5)
    all_texts = [line.split("\t")[0] for split in ("train", "val", "test")
                 for line in (folder / f"basic_{split}.tsv").read_text().splitlines()[1:]]
    assert len(set(all_texts)) == 40  # no duplicates across splits
    ids, label = splits.val[2]
    text, value = (folder / "basic_val.tsv").read_text().splitlines()[3].split("\t")
    assert int(label) == int(value) == evaluate(tokenize(text)) and len(ids) == len(tokenize(text))


def test_listops_rejects_impossible_requests():
    with pytest.raises(UserError, match="min_length < max_length"):
        generate_listops(1, min_length=100, max_length=100)
    with pytest.raises(UserError, match="found only 400 distinct expressions"):
        generate_listops(401, min_length=2, max_length=5)  # 4 operators x 10 x 10 digits


def plus_cores(pixels: np.ndarray) -> np.ndarray:
    """Pixels that are bright together with their 4 neighbours.

    Strokes are at most 2 px wide, so only the filled circles contain such a plus-shaped bright core.
    """
    bright = pixels >= 200
    core = np.zeros_like(bright)
    core[1:-1, 1:-1] = (bright[1:-1, 1:-1] & bright[:-2, 1:-1] & bright[2:, 1:-1]
                        & bright[1:-1, :-2] & bright[1:-1, 2:])
    return core


def marker_centres(pixels: np.ndarray) -> int:
    """Number of circles (blobs of plus-shaped cores)."""
    return ndimage.label(plus_cores(pixels))[1]


def test_pathfinder_images_have_two_circles_and_contours():
    rng = np.random.default_rng(0)
    for i in range(60):
        pixels, margin = draw_pathfinder(rng, i % 2, resolution=32, contour_length=14)
        assert pixels.shape == (32, 32) and pixels.dtype == np.uint8 and margin in STYLES[32].margins
        assert marker_centres(pixels) == 2
        # two targets of 14 paddles plus distractors: a good share of the image is ink
        assert 0.1 < (pixels > 60).mean() < 0.6


def test_pathfinder_64_and_128_draw():
    rng = np.random.default_rng(1)
    for resolution in (64, 128):
        pixels, _ = draw_pathfinder(rng, 1, resolution=resolution, contour_length=9)
        assert pixels.shape == (resolution, resolution) and pixels.max() == 255


def test_pathfinder_positive_circles_are_linked_by_ink():
    """Label 1: closing the dashes' gaps (one 8-connected dilation) joins the two circles.

    (Label 0 cannot be checked this way at 32 px: snakes run a margin of 1 px apart, closer than the
    gaps inside a contour, which is what makes the task hard.)
    """
    rng = np.random.default_rng(5)
    eight = np.ones((3, 3), bool)
    for _ in range(30):
        pixels, _ = draw_pathfinder(rng, 1, resolution=32, contour_length=6)
        regions, _ = ndimage.label(ndimage.binary_dilation(pixels > 20, structure=eight), structure=eight)
        centres, n = ndimage.label(plus_cores(pixels))
        assert n == 2
        assert len({int(np.bincount(regions[centres == k]).argmax()) for k in (1, 2)}) == 1


def test_write_pathfinder_balanced_and_read_by_the_loader(tmp_path):
    folder = write_pathfinder(tmp_path, count=200, resolution=32, contour_length=14, seed=0)
    assert folder == tmp_path / "pathfinder32" / "curv_contour_length_14"
    rows = read_metadata(folder)
    assert len(rows) == 200 and sum(label for _, label in rows) == 100  # exactly balanced
    first = (folder / "metadata" / "0.npy").read_text().splitlines()[0].split(" ")
    assert first[:3] == ["imgs/0", "sample_0.png", "0"] and len(first) == 11 and first[5] == "14"
    image = np.asarray(Image.open(folder / "imgs" / "0" / "sample_0.png"))
    assert image.shape == (32, 32) and image.dtype == np.uint8
    task = get_task("pathfinder")
    splits = task.load(task.options, tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 20, 20)
    train_labels = [int(splits.train[i][1]) for i in range(len(splits.train))]
    assert abs(sum(train_labels) / len(train_labels) - 0.5) < 0.1
    assert "dropped_blank" not in splits.info
    with pytest.raises(UserError, match="not empty"):
        write_pathfinder(tmp_path, count=1)


def test_write_pathfinder_baseline_folder(tmp_path):
    folder = write_pathfinder(tmp_path, count=4, contour_length=6, seed=1)
    assert folder.name == "curv_baseline"
    task = get_task("pathfinder")
    assert len(task.load({**task.options, "difficulty": "curv_baseline"}, tmp_path).train) == 4  # 4 images: 10% rounds to 0

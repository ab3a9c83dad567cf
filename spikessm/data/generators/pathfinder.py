"""Pathfinder generator: dashed curves, distractors and two circles (Linsley et al. 2018; LRA 2021).

Written from the task's description, not from the original code (drewlinsley/pathfinder, which LRA
used). An image holds:

- two *target* snakes of ``contour_length`` paddles each. A paddle is a short straight stroke; a
  snake is a chain of them with a gap of twice the margin between neighbours, so it reads as a
  dashed curve. The first snake starts near the centre (at least ``2 * seed_distance`` from the
  border), the second ``seed_distance`` from the first one's start;
- distractor snakes of ``contour_length // 3`` paddles, ``distractor_paddles // length`` of them;
- two circles: one on the start of a random target snake, the other on the end of the *same* snake
  (label 1) or of the *other* one (label 0). Either way the circles are about one contour apart, so
  their distance gives nothing away. Labels are exactly balanced (a seeded shuffle of 0/1).

A snake grows one paddle at a time. At each step it turns mid-gap by an angle drawn with weight
``cos(min(|turn| * continuity, 90 deg))**2`` among the turns whose new paddle keeps clear of every
stroke except its predecessor (an occupancy map of strokes widened by margin + thickness) and of the
border; higher continuity means straighter contours. A snake that gets stuck is erased and started
again from a new origin (targets up to ``SNAKE_TRIES`` times, then the image is redrawn; distractors
up to ``DISTRACTOR_TRIES`` times, then left out, as the original allows). The targets grow one after
the other, where the original grows them in alternation: rejecting a whole image for every stuck
snake made 64 px and larger images (long, straight contours in a small frame) too slow to draw.
Strokes are drawn at twice the resolution and averaged down (anti-aliasing), scaled by the snake
contrast and clipped; circles are white, whole and apart. The original's optional clutter of single
paddles is not drawn (its wrapper script turns it off).

Output, the layout :mod:`spikessm.data.lra.pathfinder` reads:
``pathfinder{R}/<difficulty>/imgs/<batch>/sample_<i>.png`` and ``metadata/<batch>.npy`` (text, one
line per image: ``imgs/<batch> sample_<i>.png <i> <label> <continuity> <contour_length>
<distractor_length> <paddle_length> <paddle_thickness> <margin> 1``), ``<difficulty>`` being
``curv_baseline`` for contours of 6 paddles (the original wrapper's baseline) and
``curv_contour_length_<C>`` otherwise.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikessm.errors import UserError

AA = 2  # anti-aliasing: strokes are drawn at AA times the resolution
FREE, RESERVED = 0, -1  # occupancy map values; paddles have ids >= 1
# Orientations are whole degrees. Candidate turns: every 15 degrees up to 90 either way, all shifted
# by one random jitter per paddle so that every whole-degree turn can occur.
TURNS = np.arange(-90, 91, 15)
JITTERS = np.arange(-7, 8)
IMAGES_PER_BATCH = 1000
DISTRACTOR_TRIES = 4  # then that distractor is left out, as the original allows
SNAKE_TRIES = 100  # per target snake
IMAGE_TRIES = 100


@dataclass(frozen=True)
class Style:
    """Drawing parameters of one resolution, in output pixels."""

    paddle_length: float
    paddle_thickness: float
    margins: tuple[int, ...]  # spacing: paddle gaps are twice this, snakes keep this apart; one per image
    marker_radius: float
    seed_distance: float
    continuity: float  # higher = straighter contours
    distractor_paddles: int  # distractor snakes = this // (contour_length // 3)
    contrast: float
    padding: int  # border kept empty


# LRA's lra_benchmarks/data/pathfinder.py docstrings list the settings per resolution; the rest are
# the defaults of the original generator's wrapper (paddle_length 5, seed_distance 27, padding 22).
STYLES = {
    32: Style(2, 0.5, (1,), 1.5, 7, 1.0, 20, 2.0, 1),
    64: Style(5, 1.0, (1,), 2.5, 12, 1.8, 22, 0.8, 1),
    128: Style(5, 1.5, (2, 3), 3.0, 20, 1.8, 35, 0.9, 1),
    256: Style(5, 2.0, (3,), 5.0, 27, 1.8, 30, 1.0, 22),
}


def difficulty_folder(contour_length: int) -> str:
    return "curv_baseline" if contour_length == 6 else f"curv_contour_length_{contour_length}"


def _direction(degrees) -> np.ndarray:
    """Unit vectors ``(..., 2)`` as (y, x) for angles in degrees."""
    radians = np.deg2rad(degrees)
    return np.stack([np.sin(radians), np.cos(radians)], axis=-1)


@dataclass(frozen=True)
class _Stamps:
    """A paddle's pixels, precomputed per orientation (0-359 degrees) for one drawing style.

    Offsets are relative to the pixel holding the paddle's start, taken as that pixel's centre:
    ``samples`` (360, m, 2) points along the centre line, checked for room; ``claims`` the pixels
    within the clearance of the centre line, reserved once it is drawn; ``strokes`` / ``coverage``
    the pixels of the anti-aliased stroke and how much of each it covers. With these, placing a
    paddle is a few array lookups.
    """

    samples: np.ndarray
    claims: list
    strokes: list
    coverage: list


@functools.lru_cache(maxsize=None)
def _stamps(length: float, half_width: float, clearance: float) -> _Stamps:
    reach = math.ceil(length + clearance) + 1
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    along = np.linspace(0, 1, math.ceil(length) + 1)[:, None]
    samples, claims, strokes, coverage = [], [], [], []
    for uy, ux in _direction(np.arange(360)).tolist():
        t = np.clip((dy * uy + dx * ux) / length, 0, 1)  # nearest point of the segment, as a fraction
        distance = np.hypot(dy - t * length * uy, dx - t * length * ux)
        samples.append(np.floor(0.5 + along * length * np.array([uy, ux])).astype(int))
        claims.append(np.argwhere(distance <= clearance) - reach)
        cover = np.clip(half_width + 0.5 - distance, 0, 1)
        strokes.append(np.argwhere(cover > 0) - reach)
        coverage.append(cover[cover > 0])
    return _Stamps(np.stack(samples), claims, strokes, coverage)


class _Canvas:
    """The occupancy map and the paddles of one image, in anti-aliased pixels (AA x resolution).

    Positions are ``(y, x)`` floats; a paddle is stamped from the pixel its start falls in. The map
    has a border of ``RESERVED`` pixels wide enough that no candidate paddle indexes outside it.
    """

    def __init__(self, resolution: int, style: Style, margin: int, rng: np.random.Generator):
        self.size, self.style, self.rng = resolution * AA, style, rng
        self.scalars = random.Random(int(rng.integers(2**63)))  # scalar draws: much cheaper than numpy's
        self.length, self.gap = style.paddle_length * AA, 2 * margin * AA
        # a paddle's centre line keeps this far from other strokes' centre lines: margin + thickness
        clearance = (margin + style.paddle_thickness) * AA
        self.stamps = _stamps(self.length, style.paddle_thickness * AA / 2, clearance)
        self.steps = _direction(np.arange(360))  # unit vector per orientation
        turns = TURNS + JITTERS[:, None]  # (jitter, candidate)
        self.weights = np.cos(np.minimum(np.deg2rad(np.abs(turns)) * style.continuity, np.pi / 2)) ** 2
        self.border = math.ceil(self.gap + 2 * self.length + clearance) + 2
        inner = self.border + style.padding * AA
        self.owner = np.full((self.size + 2 * self.border,) * 2, RESERVED, np.int32)
        self.owner[inner:-inner, inner:-inner] = FREE
        self.paddles: list = []  # (start pixel, orientation) of paddle id i at index i - 1

    def _pixels(self, points: np.ndarray) -> np.ndarray:
        """Map indices of positions (..., 2)."""
        return np.floor(points).astype(int) + self.border

    def _clear(self, starts: np.ndarray, orientations: np.ndarray, allowed: int) -> np.ndarray:
        """Which candidate paddles (``starts`` (K, 2), ``orientations`` (K,)) are clear of every stroke
        and of the border, except paddle id ``allowed`` (the one they continue)."""
        points = self._pixels(starts)[:, None] + self.stamps.samples[orientations]  # (K, m, 2)
        owners = self.owner[points[..., 0], points[..., 1]]
        return ((owners == FREE) | (owners == allowed)).all(axis=1)

    def _commit(self, start: np.ndarray, orientation: int) -> int:
        """Draw a paddle and claim the free pixels within the clearance of it; returns its id."""
        pixel = self._pixels(start)
        self.paddles.append((pixel, orientation))
        claimed = pixel + self.stamps.claims[orientation]
        ys, xs = claimed[self.owner[claimed[:, 0], claimed[:, 1]] == FREE].T
        self.owner[ys, xs] = len(self.paddles)
        return len(self.paddles)

    def _start(self, tail: np.ndarray, orientation: int) -> list | None:
        """A snake's first paddle, or None if it does not fit."""
        if not self._clear(tail[None], np.array([orientation]), FREE)[0]:
            return None
        return [[self._commit(tail, orientation)], tail + self.length * self.steps[orientation], orientation]

    def _extend(self, snake: list) -> bool:
        """Add one paddle to ``snake``, turning by a weighted random angle; False if none fits."""
        ids, end, orientation = snake
        jitter = self.scalars.randrange(len(JITTERS))
        orientations = (orientation + TURNS + JITTERS[jitter]) % 360
        # the turn happens mid-gap: half the gap straight on, half in the new direction
        starts = end + self.gap / 2 * (self.steps[orientation] + self.steps[orientations])
        cumulative = np.cumsum(self.weights[jitter] * self._clear(starts, orientations, ids[-1]))
        if cumulative[-1] <= 1e-9:
            return False
        k = int(np.searchsorted(cumulative, self.scalars.random() * cumulative[-1], side="right"))
        ids.append(self._commit(starts[k], orientations[k]))
        snake[1:] = [starts[k] + self.length * self.steps[orientations[k]], orientations[k]]
        return True

    def grow(self, tail: np.ndarray, n_paddles: int) -> list | None:
        """A snake of ``n_paddles`` from ``tail`` in a random direction, or None (and nothing drawn)
        if it runs out of room. A snake is ``[paddle ids, end position, orientation in degrees]``."""
        snake = self._start(tail, self.scalars.randrange(360))
        if snake is None:
            return None
        if all(self._extend(snake) for _ in range(n_paddles - 1)):
            return snake
        # its paddles are the latest ones: free what they claimed and forget them
        first = snake[0][0]
        for pixel, orientation in self.paddles[first - 1:]:
            claimed = pixel + self.stamps.claims[orientation]
            ys, xs = claimed[self.owner[claimed[:, 0], claimed[:, 1]] >= first].T
            self.owner[ys, xs] = FREE
        del self.paddles[first - 1:]
        return None

    def free_position(self) -> np.ndarray | None:
        """A random position in a free pixel, or None if there is none."""
        free = np.flatnonzero(self.owner == FREE)
        if len(free) == 0:
            return None
        pixel = np.unravel_index(self.rng.choice(free), self.owner.shape)
        return np.array(pixel) - self.border + self.rng.uniform(0, 1, 2)

    def reserve_disc(self, centre: np.ndarray, radius: float) -> None:
        ys, xs = np.ogrid[:len(self.owner), :len(self.owner)]
        cy, cx = centre + self.border
        self.owner[((ys + 0.5 - cy) ** 2 + (xs + 0.5 - cx) ** 2 <= radius ** 2) & (self.owner == FREE)] = RESERVED

    def render(self, markers: list[np.ndarray]) -> np.ndarray:
        """The image, (resolution, resolution) uint8."""
        strokes = np.zeros(self.owner.shape)
        pixels = np.concatenate([pixel + self.stamps.strokes[o] for pixel, o in self.paddles])
        coverage = np.concatenate([self.stamps.coverage[o] for _, o in self.paddles])
        np.maximum.at(strokes, (pixels[:, 0], pixels[:, 1]), coverage)
        inside = slice(self.border, self.border + self.size)
        strokes = strokes[inside, inside]
        ys, xs = np.ogrid[:self.size, :self.size]
        radius = self.style.marker_radius * AA
        discs = np.zeros_like(strokes)
        for cy, cx in markers:
            discs = np.maximum(discs, np.clip(radius + 0.5 - np.hypot(ys + 0.5 - cy, xs + 0.5 - cx), 0, 1))
        image = np.maximum(np.clip(_downsample(strokes) * self.style.contrast, 0, 1), _downsample(discs))
        return np.round(image * 255).astype(np.uint8)


def _downsample(image: np.ndarray) -> np.ndarray:
    """Average AA x AA blocks: (AA*R, AA*R) -> (R, R)."""
    n = len(image) // AA
    return image.reshape(n, AA, n, AA).mean(axis=(1, 3))


def distractor_length(contour_length: int) -> int:
    return max(1, contour_length // 3)


def _grow_target(canvas: _Canvas, contour_length: int, place) -> tuple[np.ndarray, np.ndarray] | None:
    """``(start, end)`` of a target snake grown from origins drawn by ``place()``; None if none fits."""
    for _ in range(SNAKE_TRIES):
        origin = place()
        snake = canvas.grow(origin, contour_length)
        if snake is not None:
            return origin, snake[1]
    return None


def draw_pathfinder(rng: np.random.Generator, label: int, resolution: int = 32, contour_length: int = 14
                    ) -> tuple[np.ndarray, int]:
    """One image, ``(pixels (R, R) uint8, margin used)``; label 1 = the circles share a contour."""
    style = STYLES[resolution]
    length = distractor_length(contour_length)
    for _ in range(IMAGE_TRIES):
        margin = int(rng.choice(style.margins))
        canvas = _Canvas(resolution, style, margin, rng)
        low, high = sorted((2 * style.seed_distance * AA, canvas.size - 2 * style.seed_distance * AA))
        first = _grow_target(canvas, contour_length, lambda: rng.uniform(low, high, size=2))
        if first is None:
            continue
        second = _grow_target(canvas, contour_length,
                              lambda: first[0] + style.seed_distance * AA * _direction(rng.uniform(0, 360)))
        if second is None:
            continue
        own, other = (first, second) if rng.random() < 0.5 else (second, first)
        # circles centred on output pixels, so that both look alike
        markers = [(np.floor(point / AA) + 0.5) * AA for point in (own[0], own[1] if label else other[1])]
        radius = style.marker_radius * AA
        if (np.hypot(*(markers[0] - markers[1])) < 2 * radius + 2 * AA  # touching circles hide the ends
                or min(np.min(markers), canvas.size - np.max(markers)) < radius):  # so would cut ones
            continue
        for centre in markers:
            canvas.reserve_disc(centre, (style.marker_radius + margin) * AA)
        for _ in range(style.distractor_paddles // length):
            for _ in range(DISTRACTOR_TRIES):
                origin = canvas.free_position()
                if origin is None or canvas.grow(origin, length) is not None:
                    break
        return canvas.render(markers), margin
    raise UserError(f"could not place two contours of {contour_length} paddles in a {resolution} px image "
                    f"in {IMAGE_TRIES} tries; choose a shorter contour length")


def write_pathfinder(out: Path, count: int, resolution: int = 32, contour_length: int = 14, seed: int = 0,
                     progress: bool = False) -> Path:
    """Generate ``count`` images into ``out/pathfinder{R}/<difficulty>/``; returns that folder."""
    from PIL import Image

    if resolution not in STYLES:
        raise UserError(f"--resolution must be one of {sorted(STYLES)}, got {resolution}")
    if contour_length < 2 or count < 1:
        raise UserError(f"need a contour length >= 2 and a count >= 1, got {contour_length} and {count}")
    style = STYLES[resolution]
    folder = Path(out) / f"pathfinder{resolution}" / difficulty_folder(contour_length)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} already exists and is not empty; remove it or choose another --out")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 2)
    rows: dict[int, list[str]] = {}
    for n in tqdm(range(count), desc=f"pathfinder{resolution}", unit="img", disable=not progress):
        batch, i = divmod(n, IMAGES_PER_BATCH)
        pixels, margin = draw_pathfinder(rng, int(labels[n]), resolution, contour_length)
        (folder / "imgs" / str(batch)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / "imgs" / str(batch) / f"sample_{i}.png")
        rows.setdefault(batch, []).append(
            f"imgs/{batch} sample_{i}.png {i} {labels[n]} {style.continuity} {contour_length} "
            f"{distractor_length(contour_length)} {style.paddle_length} {style.paddle_thickness} {margin} 1\n")
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    for batch, lines in rows.items():
        (folder / "metadata" / f"{batch}.npy").write_text("".join(lines))
    return folder

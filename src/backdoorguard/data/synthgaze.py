"""`synthgaze`: rendered grey-scale eye patches (1×36×60, MPIIGaze's eye-patch shape)
labelled with the gaze direction (pitch, yaw) in degrees.

It stands in for MPIIGaze-style data (Zhang et al., CVPR 2015) in the regression
backdoor work (DRMGuard evaluates on gaze): a model has to find the iris to do
well. Every image is drawn from an eyeball model, vectorised over the batch:

- an eyeball (radius R px) whose visible hemisphere carries the iris and pupil as
  caps around the gaze direction g (MPIIGaze's convention, `gaze_vectors`), so
  the iris is an ellipse foreshortened by the rotation, its centre moving by
  R·cos α·(g_x, g_y) in the image;
- a corneal glint: the reflection of a frontal light on a cornea sphere in
  front of the eyeball centre, so it moves with gaze by less than the pupil does;
- upper and lower eyelids (skewed sine curves between the two corners) that hide
  part of the eyeball, with a varying opening partly coupled to pitch (the upper
  lid follows the eye, weakly, as real lids do), a lash line, a crease, an
  eyelid shadow on the eyeball and sometimes an eyebrow at the top;
- skin of varying tone with smooth texture, a lighting gradient, contrast and
  brightness changes, Gaussian blur and pixel noise;
- a small in-plane head rotation (roll) that turns the lids and skin about the
  eyeball centre while the iris stays where the camera-frame gaze puts it.

Image direction of the labels (tested): positive yaw moves the iris to the
image's left (smaller column), positive pitch moves it up (smaller row). Labels
are drawn uniformly from `PITCH_RANGE` × `YAW_RANGE`, about MPIIGaze's span
(which leans towards looking down, at a laptop screen below the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..core.metrics import gaze_vectors
from ..core.types import ArrayDataset, Splits, TaskSpec
from ..errors import BadInput
from ..registry import register

HEIGHT, WIDTH = 36, 60
PITCH_RANGE = (-25.0, 15.0)  # degrees, positive = looking up
YAW_RANGE = (-35.0, 35.0)  # degrees, positive = looking towards the image's left
TRAIN_SIZE, TEST_SIZE = 10_000, 2_000
TRAIN_SEED, TEST_SEED = 3_601, 3_602  # fixed: the splits never depend on a run's seed
MAX_SIZE = 500_000  # 4.3 GB of float32 pixels
CHUNK = 128  # images rendered at once by `generate`: small blocks stay in the CPU cache

TASK = TaskSpec("regression", "image", (1, HEIGHT, WIDTH), 2, (0.0, 1.0),
                label_names=("pitch", "yaw"), label_units="deg",
                label_range=(PITCH_RANGE, YAW_RANGE), tol=5.0)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class Scene:
    """Per-image nuisance parameters, each a tensor of shape [N] (lengths in px,
    relative sizes as fractions of the eyeball radius R)."""

    cx: torch.Tensor  # eyeball centre, column
    cy: torch.Tensor  # eyeball centre, row
    radius: torch.Tensor  # eyeball radius R
    roll: torch.Tensor  # in-plane head rotation, radians
    half_width: torch.Tensor  # eye opening half-width / R
    inner_height: torch.Tensor  # inner (image-right) corner below the centre / R
    outer_height: torch.Tensor  # outer corner below the centre / R
    upper_open: torch.Tensor  # upper lid peak above the corner line / R
    lower_open: torch.Tensor  # lower lid dip below the corner line / R
    lid_skew: torch.Tensor  # where along the opening the lids peak
    iris_sine: torch.Tensor  # sin of the iris cap's half angle (iris radius / R)
    pupil_fraction: torch.Tensor  # pupil radius / iris radius
    skin: torch.Tensor  # skin tone
    sclera: torch.Tensor  # sclera brightness
    iris: torch.Tensor  # iris brightness
    light_x: torch.Tensor  # light direction (towards the light), x and y of (x, y, -1)
    light_y: torch.Tensor
    gradient_x: torch.Tensor  # lighting gradient across the patch
    gradient_y: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    glint: torch.Tensor  # glint intensity
    glint_size: torch.Tensor  # glint's Gaussian sd, px
    lash: torch.Tensor  # lash-line darkness
    crease: torch.Tensor  # crease darkness
    shadow: torch.Tensor  # eyelid shadow on the eyeball
    brow: torch.Tensor  # eyebrow row above the centre / R
    blur: torch.Tensor  # Gaussian blur sd, px
    noise: torch.Tensor  # pixel noise sd


# (low, high) of each uniform draw, in `Scene`'s field order
SCENE_RANGES = {
    "cx": (27.0, 33.0), "cy": (17.0, 21.0), "radius": (12.5, 15.5),
    "roll": (math.radians(-10.0), math.radians(10.0)),
    "half_width": (1.18, 1.30), "inner_height": (0.04, 0.12), "outer_height": (-0.08, 0.0),
    "upper_open": (0.38, 0.72), "lower_open": (0.30, 0.50), "lid_skew": (-0.25, 0.05),
    "iris_sine": (0.47, 0.53), "pupil_fraction": (0.28, 0.50),
    "skin": (0.22, 0.72), "sclera": (0.72, 0.95), "iris": (0.08, 0.45),
    "light_x": (-0.6, 0.6), "light_y": (-0.6, 0.4),
    "gradient_x": (-0.35, 0.35), "gradient_y": (-0.25, 0.25),
    "contrast": (0.65, 1.1), "brightness": (-0.08, 0.08),
    "glint": (0.35, 1.0), "glint_size": (0.45, 0.85),
    "lash": (0.45, 0.85), "crease": (0.05, 0.25), "shadow": (0.15, 0.45),
    "brow": (1.45, 2.1), "blur": (0.35, 1.0), "noise": (0.004, 0.03),
}


def sample_scene(n: int, generator: torch.Generator) -> Scene:
    """Draw `n` scenes' nuisance parameters from `generator` (a fixed order)."""
    return Scene(**{name: _uniform(generator, n, *bounds) for name, bounds in SCENE_RANGES.items()})


def sample_gaze(n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` (pitch, yaw) labels in degrees, uniform over the label ranges."""
    return torch.stack((_uniform(generator, n, *PITCH_RANGE), _uniform(generator, n, *YAW_RANGE)), 1)


def _col(values: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, 1], to broadcast over the pixel grid."""
    return values[:, None, None]


@lru_cache(maxsize=8)
def _upsampler(size: int, coarse: int) -> torch.Tensor:
    """[size, coarse] matrix that upsamples `coarse` values bicubically to `size`
    (F.interpolate applied to the identity), so a batch of textures is upsampled
    by two small matrix products instead of a per-pixel kernel."""
    eye = torch.eye(coarse).view(coarse, 1, coarse, 1)  # one unit impulse per row
    up = F.interpolate(eye, size=(size, 1), mode="bicubic", align_corners=False)
    return up.view(coarse, size).T.contiguous()


def _smooth_noise(generator: torch.Generator, n: int, grid: tuple[int, int]) -> torch.Tensor:
    """Smooth random texture in [-1, 1]: a coarse random grid upsampled to the
    patch, [N, H, W]."""
    coarse = torch.rand(n, *grid, generator=generator) * 2.0 - 1.0
    return _upsampler(HEIGHT, grid[0]) @ coarse @ _upsampler(WIDTH, grid[1]).T


def _bump(z: torch.Tensor) -> torch.Tensor:
    """exp(−z²), cut to 0 past |z| ≈ 5.5: underflowing exponentials produce
    denormal floats, which make every later operation on them many times slower."""
    return torch.exp(-(z * z).clamp_(max=30.0))


def _decay(z: torch.Tensor) -> torch.Tensor:
    """exp(−z) for z ≥ 0, cut (as `_bump`) past z = 30."""
    return torch.exp(-z.clamp(0.0, 30.0))


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur ([N, H, W], sd `sigma` [N] px), by one
    grouped convolution per axis."""
    n = len(images)
    offsets = torch.arange(-3, 4, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    x = F.pad(images[None], (3, 3, 3, 3), mode="replicate")
    x = F.conv2d(x, kernel.view(n, 1, 1, 7), groups=n)
    x = F.conv2d(x, kernel.view(n, 1, 7, 1), groups=n)
    return x[0]


def _iris(scene: Scene, layer: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor,
          nz: torch.Tensor, gaze: tuple[torch.Tensor, ...], texture: torch.Tensor) -> torch.Tensor:
    """`layer` with the iris and pupil drawn over it: caps of the eyeball around
    the gaze direction, seen from the surface normals (nx, ny, nz)."""
    gx, gy, gz = gaze
    # coordinates in the iris plane: the frame e1 = g × (0, 1, 0) = (−g_z, 0, g_x),
    # e2 = g × e1; |(n·e1, n·e2)| is the sine of the angle from g
    norm = torch.rsqrt(gx * gx + gz * gz)
    e1x, e1z = -gz * norm, gx * norm
    e2x, e2y, e2z = gy * e1z, gz * e1x - gx * e1z, -gy * e1x
    inv_sine = 1.0 / _col(scene.iris_sine)
    c1 = (nx * e1x).add_(nz * e1z).mul_(inv_sine)
    c2 = (nx * e2x).add_(ny * e2y).add_(nz * e2z).mul_(inv_sine)
    r2 = c1 * c1 + c2 * c2  # squared radius in the iris plane, 1 at the limbus
    # iris crypts and fibres: a coarse random texture over the iris plane
    grid = torch.stack((c1, c2), -1)
    spots = F.grid_sample(texture, grid, align_corners=False, padding_mode="border")[:, 0]
    limbus = (r2 - 0.55).clamp_(0.0, 0.45).mul_(-1.1).add_(1.0)  # darker towards the edge
    iris_value = spots.mul_(0.2).add_(1.0).mul_(limbus).mul_(_col(scene.iris))
    sharp = _col(scene.radius * scene.iris_sine) / (2 * 0.45)  # ~0.45 px edges
    in_iris = torch.sigmoid((1.0 - r2) * sharp)
    pupil2 = _col(scene.pupil_fraction ** 2)
    in_pupil = torch.sigmoid((pupil2 - r2).mul_(sharp / _col(scene.pupil_fraction)))
    iris_value.add_(in_pupil.mul_(0.04 - iris_value))
    return layer.add_(in_iris.mul_(iris_value - layer))


def _eyeball(scene: Scene, gaze: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
             texture: torch.Tensor, iris: bool, glint: bool) -> torch.Tensor:
    """The eyeball layer [N, H, W]: shaded sclera, iris and pupil caps around the
    gaze direction, corneal glint. `dx` [N, 1, W] and `dy` [N, H, 1]: pixel
    offsets from the eyeball centre in units of R (camera frame); `texture`
    [N, 1, 7, 7]: random iris crypts over the iris plane."""
    n = len(gaze)
    rho2 = dx * dx + dy * dy
    # beyond the sphere's outline (the eye corners) use its rim, shaded darker
    scale = torch.rsqrt(rho2.clamp(min=1.0))
    nx, ny = dx * scale, dy * scale
    nz = (nx * nx + ny * ny).neg_().add_(1.0).clamp_(min=0.0).sqrt_().neg_()
    light = torch.stack((scene.light_x, scene.light_y, -torch.ones(n)), 1)
    light = light / light.norm(dim=1, keepdim=True)
    lx, ly, lz = (_col(light[:, i]) for i in range(3))
    lambert = (nx * lx).add_(ny * ly).add_(nz * lz).clamp_(min=0.0)
    layer = lambert.mul_(0.45).add_(0.55).mul_(_decay(2.0 * (rho2 - 1.0))).mul_(_col(scene.sclera))
    gx, gy, gz = (_col(gaze[:, i]) for i in range(3))
    if iris:
        layer = _iris(scene, layer, nx, ny, nz, (gx, gy, gz), texture)
    if glint:
        # reflection of the light on a cornea sphere (centre 0.45 R along g, radius 0.65 R):
        # its point faces the half-vector between light and camera
        half = light + torch.tensor([[0.0, 0.0, -1.0]])
        half = half / half.norm(dim=1, keepdim=True)
        spot_x = 0.45 * gx + 0.65 * _col(half[:, 0])
        spot_y = 0.45 * gy + 0.65 * _col(half[:, 1])
        size = _col(scene.glint_size / scene.radius * math.sqrt(2.0))
        spot = _bump((dx - spot_x) / size) * _bump((dy - spot_y) / size) * _col(scene.glint)
        layer.add_(spot.mul_(1.0 - layer))
    return layer


def _lids(scene: Scene, u: torch.Tensor, pitch_sine: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows (head frame, units of R) of the upper and lower lid margins above
    each pixel, and how strongly each point lies between the corners (0..1).

    Along the opening (t = 0 at the outer corner, 1 at the inner) each lid is a
    skewed parabola from the line joining the corners, negative beyond them (the
    lids cross, closing the opening); the upper lid's is flattened at the top.
    The upper lid follows vertical gaze partly, the lower lid a little.
    """
    width = _col(scene.half_width)
    t = (u + width) / (2.0 * width + 0.1)
    t = t.addcmul_(_col(scene.lid_skew), t * (1.0 - t)).clamp_(-0.5, 1.5)
    q = (1.0 - t).mul_(t).mul_(4.0)
    corner_v = t.mul_(_col(scene.inner_height - scene.outer_height)).add_(_col(scene.outer_height))
    upper_shape = q * (1.6 - 0.6 * q)
    upper_v = corner_v - (_col(scene.upper_open) + 0.55 * pitch_sine) * upper_shape
    lower_v = corner_v + (_col(scene.lower_open) - 0.12 * pitch_sine) * q
    return upper_v, lower_v, q.clamp_(0.0, 1.0)


def _face(scene: Scene, u: torch.Tensor, v: torch.Tensor, pitch_sine: torch.Tensor,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Skin layer, eye-opening mask and lid darkening, [N, H, W] each. `u`, `v`:
    head-frame offsets from the eyeball centre in units of R (rotated by roll)."""
    n = len(u)
    radius = _col(scene.radius)
    upper_v, lower_v, along = _lids(scene, u, pitch_sine)
    below_upper = v - upper_v  # > 0 inside the opening
    above_lower = lower_v - v
    opening = torch.sigmoid(below_upper * (radius / 0.6)) * torch.sigmoid(
        above_lower * (radius / 0.6))  # ~0.6 px soft lid edges
    lash_line = _bump((below_upper + 0.04) * (radius / 1.1)).mul_(along)
    lower_line = _bump(above_lower * (radius / 0.8)).mul_(along)
    # the eyelid casts a shadow on the eyeball just below its margin
    shadow = _decay(below_upper / 0.15).mul_(opening).mul_(_col(scene.shadow))
    darkening = (1.0 - _col(scene.lash) * lash_line - 0.2 * lower_line).mul_(1.0 - shadow)

    texture = 1.0 + 0.07 * _smooth_noise(generator, n, (4, 6)) + 0.04 * _smooth_noise(
        generator, n, (9, 15))
    width = _col(scene.half_width)
    socket = 1.0 - 0.18 * _bump(u / (1.5 * width)) * _bump((v + 0.1) / 0.9)
    # the lid crease runs about 0.35 R above the lid margin
    crease = _col(scene.crease) * _bump((below_upper + 0.35 * along) * (radius / 1.6)) * along
    hair = 0.6 + 0.4 * _smooth_noise(generator, n, (3, 30))
    brow = 0.55 * torch.sigmoid((0.12 * u * u - _col(scene.brow) - v) * (radius / 1.5)) * hair
    skin = _col(scene.skin) * texture * socket * (1.0 - crease) * (1.0 - brow)
    return skin, opening, darkening


def render(pitch: torch.Tensor, yaw: torch.Tensor, generator: torch.Generator | int, *,
           iris: bool = True, glint: bool = True) -> torch.Tensor:
    """Eye patches [N, 1, 36, 60] in [0, 1] for gaze (pitch, yaw) in degrees [N].

    A pure function of its arguments and the generator's state (or a seed): the
    same labels and the same seed give identical images. `iris=False` /
    `glint=False` leave out the iris and pupil / the corneal glint (to check what
    a model relies on); everything else, random draws included, is unchanged.
    """
    pitch = torch.as_tensor(pitch, dtype=torch.float32).flatten()
    yaw = torch.as_tensor(yaw, dtype=torch.float32).flatten()
    if pitch.shape != yaw.shape:
        raise BadInput(f"pitch has {len(pitch)} values but yaw has {len(yaw)}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    n = len(pitch)
    scene = sample_scene(n, generator)
    gaze = gaze_vectors(torch.stack((pitch, yaw), 1)).float()
    rows = torch.arange(HEIGHT, dtype=torch.float32)[None, :, None] + 0.5
    cols = torch.arange(WIDTH, dtype=torch.float32)[None, None, :] + 0.5
    radius = _col(scene.radius)
    dx = (cols - _col(scene.cx)) / radius
    dy = (rows - _col(scene.cy)) / radius
    cos_roll, sin_roll = _col(scene.roll.cos()), _col(scene.roll.sin())
    u = cos_roll * dx + sin_roll * dy
    v = -sin_roll * dx + cos_roll * dy

    pitch_sine = _col(torch.sin(torch.deg2rad(pitch)))
    skin, opening, darkening = _face(scene, u, v, pitch_sine, generator)
    iris_texture = torch.randn(n, 1, 7, 7, generator=generator)  # drawn even when unused
    eye = _eyeball(scene, gaze, dx, dy, iris_texture, iris, glint)
    image = (skin + (eye - skin) * opening) * darkening
    gradient = 1.0 + _col(scene.gradient_x) * (cols / WIDTH * 2 - 1) + _col(
        scene.gradient_y) * (rows / HEIGHT * 2 - 1)
    image = (image * gradient - 0.5) * _col(scene.contrast) + 0.5 + _col(scene.brightness)
    image = _blur(image, scene.blur)
    image = image + _col(scene.noise) * torch.randn(image.shape, generator=generator)
    return image.clamp(0.0, 1.0)[:, None]


def generate(n: int, seed: int, *, iris: bool = True, glint: bool = True) -> ArrayDataset:
    """`n` labelled eye patches from `seed`, rendered `CHUNK` at a time."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SIZE:
        raise BadInput(f"synthgaze size {n!r} must be an integer from 1 to {MAX_SIZE:,}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInput(f"synthgaze seed {seed!r} must be a non-negative integer")
    generator = torch.Generator().manual_seed(seed)
    labels = sample_gaze(n, generator)
    images = torch.empty(n, 1, HEIGHT, WIDTH)
    for start in range(0, n, CHUNK):
        part = labels[start:start + CHUNK]
        images[start:start + CHUNK] = render(part[:, 0], part[:, 1], generator, iris=iris, glint=glint)
    return ArrayDataset(images, labels, TASK)


# cnn-small at width 16 with a 5×5 pooled grid (position is the signal) and an L1
# loss (as gaze papers use); measured in docs/synthgaze.md
RECIPE = {"model": "cnn-small", "model_args": {"width": 16, "grid": 5},
          "train": {"epochs": 12, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
                    "schedule": "cosine", "loss": "l1"}}


@register("dataset", "synthgaze", "rendered eye patches, gaze (pitch, yaw) in degrees",
          tasks=("regression",), modalities=("image",), shape=TASK.input_shape,
          size=TRAIN_SIZE + TEST_SIZE, units="deg", recipe=RECIPE)
def load_synthgaze() -> Splits:
    """10,000 training and 2,000 test patches, each from its own fixed seed."""
    return Splits("synthgaze", generate(TRAIN_SIZE, TRAIN_SEED), generate(TEST_SIZE, TEST_SEED))


@register("dataset", "synthgaze:", "synthgaze with N training patches (synthgaze:N); "
          "the same 2,000 test patches", tasks=("regression",), modalities=("image",),
          shape=TASK.input_shape, size=f"N + {TEST_SIZE:,}", units="deg", recipe=RECIPE)
def load_synthgaze_sized(size: str) -> Splits:
    """`synthgaze:N`: N training patches from the training seed (the first N of
    any larger size are not guaranteed equal: rendering runs in chunks)."""
    try:
        n = int(size.replace("_", ""))
    except ValueError:
        raise BadInput(f"synthgaze size {size!r} must be an integer, as in synthgaze:20000") from None
    return Splits(f"synthgaze:{n}", generate(n, TRAIN_SEED), generate(TEST_SIZE, TEST_SEED))

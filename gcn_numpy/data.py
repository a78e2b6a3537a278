"""Training images: the shipped CC0 textures, the user's files, aligned faces.

Images are prepared the release's way: intensities 0-255, the mean subtracted. The mean
is one value per channel over all training images and pixels (for a single texture the
pixel-wise mean image would be the image itself); the chains start at 0, which is this
mean image. :func:`to_uint8` adds it back.
"""

import glob
import os
import warnings
from importlib import resources
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

TEXTURES = ("brick", "grass", "gravel")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

__all__ = [
    "TEXTURES",
    "texture_path",
    "expand_paths",
    "load_images",
    "shipped_texture",
    "texture_crops",
    "texture_crop_boxes",
    "CropBox",
    "lfw_faces",
    "prepare",
    "to_uint8",
    "load_training_images",
    "training_photo",
    "training_shape",
    "check_contrast",
    "FLAT_GREY_LEVELS",
    "DataError",
    "UpsamplingWarning",
]


class DataError(ValueError):
    """A problem with the training images, worded for the user.

    Examples
    --------
    >>> try:
    ...     texture_path("marble")
    ... except DataError as e:
    ...     print(e)
    unknown texture 'marble'; shipped: brick, grass, gravel
    """


def texture_path(name):
    """Path of a shipped texture (see ``gcn_numpy/data/PROVENANCE.md``).

    Examples
    --------
    >>> texture_path("gravel").endswith("gravel.png")
    True
    """
    if name not in TEXTURES:
        raise DataError(f"unknown texture {name!r}; shipped: {', '.join(TEXTURES)}")
    return str(resources.files("gcn_numpy") / "data" / f"{name}.png")


def expand_paths(specs):
    """Files named by ``specs``: each a file, a folder (its images) or a glob pattern.

    Examples
    --------
    >>> import os
    >>> folder = os.path.dirname(texture_path("gravel"))
    >>> [os.path.basename(p) for p in expand_paths([os.path.join(folder, "g*.png")])]
    ['grass.png', 'gravel.png']
    """
    paths = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(spec, n)
                for n in os.listdir(spec)
                if n.lower().endswith(IMAGE_SUFFIXES)
            )
            if not found:
                raise DataError(f"folder {spec!r} holds no images")
        elif os.path.isfile(spec):
            found = [spec]
        else:
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise DataError(f"no such file, folder or matching glob: {spec!r}")
        paths.extend(found)
    return paths


GRAY_MODES = ("1", "L", "LA", "La", "I", "F") + tuple(f"I;16{e}" for e in ("", "B", "L", "N"))
UPSAMPLING_WARNED = 2.0  # a warning when an image is enlarged by more than this factor


class UpsamplingWarning(UserWarning):
    """A training image much smaller than the training size, enlarged (and blurred).

    Examples
    --------
    >>> import os, tempfile, warnings
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.png")
    >>> Image.new("L", (8, 8)).save(path)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = load_images([path], 32)
    >>> caught[0].category.__name__, "upsampled 4.0x" in str(caught[0].message)
    ('UpsamplingWarning', True)
    """


def _resize(image, size, path=None):
    """Scale so the shorter side is ``size``."""
    w, h = image.size
    scale = size / min(w, h)
    if path is not None and scale > UPSAMPLING_WARNED:
        warnings.warn(
            f"{path} is {w}x{h} px: it is upsampled {scale:.1f}x to {size} px, and learned "
            "blurred; give a larger image or a smaller --size",
            UpsamplingWarning,
            stacklevel=3,
        )
    if scale != 1:
        image = image.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS
        )
    return image


def _resize_crop(image, size, path=None):
    """Scale so the shorter side is ``size``, then crop the centre ``size x size``."""
    image = _resize(image, size, path)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _open(path):
    """The image in ``path``, fully read; :class:`DataError` for what Pillow cannot read,
    a truncated file, or a decompression bomb (an image larger than Pillow's limit)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{path} has more pixels than this program reads (Pillow's limit, "
            f"{Image.MAX_IMAGE_PIXELS} pixels): shrink it first"
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image Pillow can read") from None
    except OSError as e:
        raise DataError(f"{path} is truncated or damaged (Pillow: {e})") from None


def _is_gray(image):
    if image.mode in GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):  # a palette of greys only
        palette = np.asarray(image.convert("RGB"))
        return bool(np.all(palette == palette[..., :1]))
    return False


def _channels(image, gray):
    """The image as float planes in 0-255 (one for gray, R, G, B otherwise).

    Conversions: alpha is dropped (pixels as stored, not composited); palettes, CMYK and
    other colour spaces become RGB; bilevel images 0 and 255; 16-bit images are divided by
    257 (65535 -> 255) and 32-bit integer ones too when they exceed 255; floating-point
    images in [0, 1] are multiplied by 255, others taken as they are.
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(image, dtype=np.float64)
        if mode == "F":
            a = a * 255 if a.size and np.nanmax(a) <= 1.0 else a
        elif mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0
        return [a] if gray else [a, a, a]
    if gray:
        return [np.asarray(image.convert("L"), dtype=np.float64)]
    return list(np.asarray(image.convert("RGB"), dtype=np.float64).transpose(2, 0, 1))


def _planes_to_images(planes):
    return [Image.fromarray(p.astype(np.float32), mode="F") for p in planes]


def _prepared(image, gray, size, path, crop=True):
    """One image as an array ``(C, size, size)`` (``crop``) or ``(C, H, W)`` with the
    shorter side ``size``, in 0-255."""
    fit = _resize_crop if crop else _resize
    if image.mode in ("L", "RGB") or (not image.mode.startswith("I") and image.mode != "F"):
        eight_bit = image.convert("L" if gray else "RGB")
        a = np.asarray(fit(eight_bit, size, path), dtype=np.float64)
        return a[None] if gray else a.transpose(2, 0, 1)
    planes = [np.asarray(fit(p, size, path)) for p in _planes_to_images(_channels(image, gray))]
    return np.clip(np.stack(planes).astype(np.float64), 0.0, 255.0)  # Lanczos overshoots


def _read(paths):
    images = [_open(path) for path in paths]
    return images, all(_is_gray(im) for im in images)


def load_images(paths, size):
    """Read image files into an array of shape (M, C, size, size), floats in 0-255.

    Gray if every file is gray, otherwise RGB (C = 3): see :func:`_channels` for how
    palettes, alpha, 16-bit and floating-point images are converted. Bad files raise
    :class:`DataError`; images enlarged more than ``UPSAMPLING_WARNED`` times warn
    (:class:`UpsamplingWarning`).

    Examples
    --------
    >>> images = load_images([texture_path("brick"), texture_path("grass")], 64)
    >>> images.shape, images.dtype, bool(0 <= images.min() <= images.max() <= 255)
    ((2, 1, 64, 64), dtype('float64'), True)
    """
    images, gray = _read(paths)
    return np.stack(
        [_prepared(im, gray, size, path) for im, path in zip(images, paths, strict=True)]
    )


def shipped_texture(name, size, scale=None):
    """One shipped texture (512 x 512 px), shape (1, 1, size, size).

    ``scale=None`` resizes the whole photograph to ``size`` (the release's way with its
    224 px images); a number first scales the photograph by that factor (1.0: its own
    pixels) and then crops the centre ``size x size``, keeping the stones or blades of
    grass large enough to learn at small sizes.

    Examples
    --------
    >>> shipped_texture("gravel", 64, scale=1.0).shape
    (1, 1, 64, 64)
    """
    if scale is None:
        return load_images([texture_path(name)], size)
    full = round(512 * scale)
    if full < size:
        raise DataError(f"a {size} px crop does not fit the texture scaled to {full} px")
    image = load_images([texture_path(name)], full)
    top = (full - size) // 2
    return image[:, :, top : top + size, top : top + size]


class CropBox(NamedTuple):
    """Where a crop of :func:`texture_crops` is cut: the texture, the top-left pixel and the
    side, in the texture seen at half scale (256 px).

    Examples
    --------
    >>> a = CropBox("brick", 0, 0, 32)
    >>> a.overlaps(CropBox("brick", 31, 31, 32)), a.overlaps(CropBox("brick", 32, 0, 32))
    (True, False)
    >>> a.overlaps(CropBox("grass", 0, 0, 32))  # another photograph
    False
    """

    texture: str
    top: int
    left: int
    size: int

    def overlaps(self, other):
        """Whether the two crops share a pixel of the same texture."""
        return (
            self.texture == other.texture
            and self.top < other.top + other.size
            and other.top < self.top + self.size
            and self.left < other.left + other.size
            and other.left < self.left + self.size
        )


TEXTURE_CROP_SIDE = 256  # the shipped 512 px textures seen at half scale
CROP_TRIES = 1000  # draws per crop before exclude is declared to leave no room


def texture_crop_boxes(n, size, seed=0, exclude=()):
    """Where :func:`texture_crops` cuts its ``n`` crops: one :class:`CropBox` each, at a
    random place of texture ``i % 3`` for crop ``i``. A crop that would share a pixel with a
    box of ``exclude`` is drawn again, so that held-out crops can be made disjoint from
    training crops by construction; without ``exclude`` every crop is one draw.

    Examples
    --------
    >>> train = texture_crop_boxes(10, 32)
    >>> held_out = texture_crop_boxes(10, 32, seed=1, exclude=train)
    >>> any(a.overlaps(b) for a in held_out for b in train)
    False
    """
    if size > TEXTURE_CROP_SIDE:
        raise DataError(f"crops of {size} px exceed the {TEXTURE_CROP_SIDE} px textures")
    rng = np.random.default_rng(seed)
    exclude = list(exclude)
    boxes = []
    for i in range(n):
        texture = TEXTURES[i % len(TEXTURES)]
        for _ in range(CROP_TRIES):
            y, x = rng.integers(0, TEXTURE_CROP_SIDE - size + 1, size=2)
            box = CropBox(texture, int(y), int(x), size)
            if not any(box.overlaps(other) for other in exclude):
                break
        else:
            raise DataError(
                f"no {size} px crop of {texture} avoids the excluded crops after {CROP_TRIES} draws"
            )
        boxes.append(box)
    return boxes


def texture_crops(n, size, seed=0, exclude=()):
    """``n`` different ``size x size`` crops from the shipped textures (for CD), taken at
    random places of random textures, each texture's full 512 px seen at half scale;
    ``exclude``: boxes that no crop may overlap (see :func:`texture_crop_boxes`).

    Examples
    --------
    >>> texture_crops(4, 48).shape
    (4, 1, 48, 48)
    >>> texture_crops(4, 48, seed=1, exclude=texture_crop_boxes(4, 48)).shape  # held out
    (4, 1, 48, 48)
    """
    boxes = texture_crop_boxes(n, size, seed, exclude)
    full = {
        name: load_images([texture_path(name)], TEXTURE_CROP_SIDE)[0]
        for name in {box.texture for box in boxes}
    }
    return np.stack(
        [full[b.texture][:, b.top : b.top + b.size, b.left : b.left + b.size] for b in boxes]
    )


def lfw_faces(n, size):
    """``n`` aligned faces from scikit-image's LFW subset (the optional ``data`` extra).

    Examples
    --------
    >>> lfw_faces(3, 32).shape  # doctest: +SKIP
    (3, 1, 32, 32)
    """
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise DataError(
            "the faces come from scikit-image: pip install 'gcn_numpy[data]', "
            "or give your own aligned images with --image"
        ) from None
    faces = lfw_subset()[:n]  # (n, 25, 25), floats in [0, 1]
    images = [
        Image.fromarray(np.uint8(np.clip(f * 255, 0, 255))).resize(
            (size, size), Image.Resampling.LANCZOS
        )
        for f in faces
    ]
    return np.stack([np.asarray(im, dtype=np.float64)[None] for im in images])


def prepare(images):
    """Subtract the per-channel mean: returns ``(centred images, mean of shape (C,))``.

    Examples
    --------
    >>> import numpy as np
    >>> centred, mean = prepare(np.full((2, 1, 4, 4), 100.0))
    >>> float(abs(centred).max()), mean
    (0.0, array([100.]))
    """
    mean = images.mean(axis=(0, 2, 3))
    return images - mean[None, :, None, None], mean


def to_uint8(images, mean):
    """Model units back to 0-255 pixels: add the mean, clip, round. (N, C, H, W) in,
    (N, H, W) for gray or (N, H, W, 3) for color out.

    Examples
    --------
    >>> import numpy as np
    >>> to_uint8(np.array([[[[-200.0, 0.4, 300.0]]]]), np.array([100.0]))
    array([[[  0, 100, 255]]], dtype=uint8)
    """
    a = np.asarray(images, dtype=np.float64) + np.asarray(mean)[None, :, None, None]
    a = np.uint8(np.clip(np.rint(a), 0, 255))
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def load_training_images(config):
    """The training images a :class:`~gcn_numpy.presets.TrainConfig` names, in 0-255, shape
    ``(M, C, size, size)``.

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> load_training_images(get_preset("texture")).shape  # a 64 px crop of the gravel
    (1, 1, 64, 64)
    """
    kind = config.data
    if kind == "files":
        return load_images(expand_paths(config.images), config.size)
    if kind.startswith("texture:"):
        return shipped_texture(kind.split(":", 1)[1], config.size, config.texture_scale)
    if kind == "texture-crops":
        return texture_crops(config.n_images, config.size, seed=config.seed)
    if kind == "lfw":
        return lfw_faces(config.n_images, config.size)
    raise DataError(f"unknown data source {kind!r}")


def training_photo(config):
    """The photograph a texture is learned from, at the training scale and uncropped, shape
    ``(C, H, W)`` in 0-255: the source of real crops to compare samples with (the frame
    score's reference). ``None`` for data that is not one texture photograph.

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> training_photo(get_preset("texture")).shape  # the photograph at its own scale
    (1, 512, 512)
    >>> training_photo(get_preset("cd")) is None  # crops of several textures
    True
    """
    kind = config.data
    if kind.startswith("texture:"):
        name = kind.split(":", 1)[1]
        scale = config.texture_scale
        full = config.size if scale is None else round(512 * scale)
        return load_images([texture_path(name)], full)[0]
    if kind == "files":
        paths = expand_paths(config.images)
        if len(paths) != 1:
            return None
        images, gray = _read(paths)
        return _prepared(images[0], gray, config.size, None, crop=False)
    return None


def load_image(path, channels, size=None, strict=False):
    """One image file as a (channels, H, W) array of 0-255 values: converted to grey
    (``channels == 1``) or to colour (3), or with ``strict`` a :class:`DataError` when
    the file's own kind (grey or colour) differs; resized (shorter side) and
    centre-cropped to ``size x size`` when ``size`` is given, otherwise at its own size.

    Examples
    --------
    >>> load_image(texture_path("gravel"), 3, size=32).shape
    (3, 32, 32)
    >>> load_image(texture_path("gravel"), 1).shape
    (1, 512, 512)
    """
    if channels not in (1, 3):
        raise DataError(f"images have 1 or 3 channels, not {channels}")
    images, gray = _read([path])
    if strict and gray != (channels == 1):
        kind, want = ("grey", "colour") if gray else ("colour", "grey")
        raise DataError(f"{path} is a {kind} image and the model's are {want}: convert it first")
    image = images[0]
    if size is None:  # its own size: the shorter side as it is
        size = min(image.size)
    return _prepared(image, channels == 1, size, path, crop=size != min(image.size))


def _header_channels(path):
    """1 if the file's header says grey, else 3 (colour, a palette, or a file the load will
    then report as unreadable): read without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the load warns, or refuses, with the path
            with Image.open(path) as im:
                return 1 if im.mode in GRAY_MODES else 3
    except (OSError, ValueError, Image.DecompressionBombError):
        return 3  # the load that follows says what is wrong with the file


def training_shape(config):
    """The shape :func:`load_training_images` returns for ``config``, ``(M, C, size,
    size)``, from the files' headers, without decoding a pixel: what a run's memory
    estimate needs before the images are read (a grey palette counts as colour, 3
    channels, an upper bound).

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> training_shape(get_preset("texture")), training_shape(get_preset("cd"))
    ((1, 1, 64, 64), (10, 1, 48, 48))
    """
    kind, size = config.data, config.size
    if kind == "files":
        paths = expand_paths(config.images)
        return (len(paths), max(_header_channels(p) for p in paths), size, size)
    if kind.startswith("texture:"):
        return (1, _header_channels(texture_path(kind.split(":", 1)[1])), size, size)
    if kind in ("texture-crops", "lfw"):  # grey: the shipped textures, LFW's faces
        return (config.n_images, 1, size, size)
    raise DataError(f"unknown data source {kind!r}")


FLAT_GREY_LEVELS = 1.0  # an image whose every channel varies less than this (standard
# deviation, 0-255), one step of an 8-bit image, is flat


def check_contrast(images):
    """``images`` ``(M, C, H, W)`` in 0-255, unchanged, if at least one channel of one
    image varies; :class:`DataError` ("nothing to learn") when every image is flat: each
    channel's standard deviation over its pixels below :data:`FLAT_GREY_LEVELS`. A flat
    image (a 1 x 1 image enlarged, a constant colour) holds no pattern for the filters to
    learn, and the summary's numbers, measured in units of its spread, would be
    undefined.

    Examples
    --------
    >>> import numpy as np
    >>> check_contrast(np.full((1, 3, 8, 8), 200.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gcn_numpy.data.DataError: the training images are flat (standard deviation 0.00 ...
    >>> check_contrast(np.arange(64.0).reshape(1, 1, 8, 8)).shape
    (1, 1, 8, 8)
    """
    images = np.asarray(images)
    spread = float(images.std(axis=(2, 3)).max()) if images.size else 0.0
    if not spread >= FLAT_GREY_LEVELS:
        raise DataError(
            f"the training images are flat (standard deviation {spread:.2f} grey levels, "
            f"below {FLAT_GREY_LEVELS:g} of 0-255): nothing to learn; give an image with "
            "some texture"
        )
    return images

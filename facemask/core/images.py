"""Image decoding shared by the services, the CLI and training: any common format in, RGB uint8 out."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facemask.core.errors import FacemaskError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# PIL raises DecompressionBombError above 2x this; warn-level bombs are refused too (see below).
MAX_IMAGE_PIXELS = 80_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageError(FacemaskError, ValueError):
    """The input is not a usable image; the message is meant for the user."""


def declared_pixels(data: bytes) -> int:
    """Width x height as the image's header declares them, read without decoding a pixel (PIL opens lazily)."""
    if len(data) == 0:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.width * image.height
    except Image.DecompressionBombError:
        raise ImageError(f"image has too many pixels (limit {MAX_IMAGE_PIXELS:,})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image: {error}") from None


def decode_image(data: bytes | Path | str, max_pixels: int | None = None) -> np.ndarray:
    """Decode bytes or a file into an RGB uint8 array, applying EXIF orientation.

    Grayscale, palette, RGBA (flattened on white), CMYK and 16-bit images are converted; anything else raises
    ImageError with a one-line reason. max_pixels refuses larger images from their header, before decoding.
    """
    if isinstance(data, (bytes, bytearray)):
        if len(data) == 0:
            raise ImageError("empty file")
        source: io.BytesIO | Path = io.BytesIO(data)
    else:
        path = Path(data)
        if not path.is_file():
            raise ImageError(f"no such file: {path}")
        source = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise ImageError(f"image too large: {image.width}x{image.height} pixels, the limit here is "
                                     f"{max_pixels:,} pixels")
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # in place: no second full-size copy
                return _to_rgb(image)
    except ImageError:  # an ImageError is a ValueError too: it is not "corrupt" (issue 27)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image has too many pixels (limit {MAX_IMAGE_PIXELS:,})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated / corrupt data
        raise ImageError(f"corrupt or truncated image: {error}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 array with as few full-size copies as possible: an 80 Mpx image is 240 MB in RGB, and each extra
    copy of it counts against the worker's memory (issue 15: under 1 GB for any request within the limits). The
    image is closed (its pixels freed) as soon as a converted copy exists."""
    if image.width < 1 or image.height < 1:
        raise ImageError("image has no pixels")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Integer arithmetic: a float copy of an 80 Mpx 16-bit image alone took 320 MB per step.
        array = np.asarray(image)
        image.close()
        if array.max() > 255:
            array = np.clip(array, 0, 65535) // 257
        return _gray_to_rgb(np.clip(array, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        converted = Image.new("RGB", rgba.size, (255, 255, 255))
        converted.paste(rgba, (0, 0), rgba)  # alpha as the mask: transparent parts stay white
        rgba.close()
    elif image.mode in ("1", "L"):
        converted = image if image.mode == "L" else image.convert("L")
    else:
        converted = image if image.mode == "RGB" else image.convert("RGB")
    if converted is not image:
        image.close()
    pixels = _pixels(converted)
    converted.close()
    return pixels if pixels.ndim == 3 else _gray_to_rgb(pixels)


def _pixels(image: Image.Image, band_pixels: int = 4_000_000) -> np.ndarray:
    """np.asarray(image) of an 8-bit L or RGB image, in bands: Pillow's tobytes() behind np.asarray builds the
    whole image twice (chunks, then their join), 480 MB more for an 80 Mpx photo."""
    rows = max(1, band_pixels // image.width)
    if rows >= image.height:
        return np.asarray(image)
    shape = (image.height, image.width) if image.mode == "L" else (image.height, image.width, 3)
    pixels = np.empty(shape, dtype=np.uint8)
    for top in range(0, image.height, rows):
        bottom = min(image.height, top + rows)
        pixels[top:bottom] = np.asarray(image.crop((0, top, image.width, bottom)))
    return pixels


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    rgb = np.empty(gray.shape + (3,), dtype=np.uint8)
    rgb[...] = gray[..., None]
    return rgb


def encode_png(image_rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_jpeg(image_rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

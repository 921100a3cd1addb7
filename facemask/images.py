"""Image decoding shared by the services, the CLI and training: any common format in, RGB uint8 out."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# PIL raises DecompressionBombError above 2x this; warn-level bombs are refused too (see below).
MAX_IMAGE_PIXELS = 80_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageError(ValueError):
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
        source = io.BytesIO(data)
    else:
        source = Path(data)
        if not source.is_file():
            raise ImageError(f"no such file: {source}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise ImageError(f"image too large: {image.width}x{image.height} pixels, the limit here is "
                                     f"{max_pixels:,} pixels")
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image has too many pixels (limit {MAX_IMAGE_PIXELS:,})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated / corrupt data
        raise ImageError(f"corrupt or truncated image: {error}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Integer arithmetic in place: a float copy of an 80 Mpx 16-bit image alone took 320 MB per step.
        array = np.asarray(image)
        if array.max() > 255:
            array = np.clip(array, 0, 65535) // 257
        gray = np.clip(array, 0, 255).astype(np.uint8)
        del array
        rgb = np.empty(gray.shape + (3,), dtype=np.uint8)
        rgb[...] = gray[..., None]
        return rgb
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError("image has no pixels")
    return np.ascontiguousarray(array)


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

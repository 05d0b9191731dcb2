"""Image transformations of the stand-in's Storage API (``/render/image/...``), done with Pillow.

Supabase renders images through imgproxy; the parameters are ``width``, ``height`` (1-2500), ``resize``
(``cover`` crops to fill the box, ``contain`` fits inside it, ``fill`` stretches), ``quality`` (20-100,
default 80) and ``format`` (``origin`` keeps the type; ``avif``/``webp``/``png``/``jpeg`` convert). A
signed URL carries them in its token as ``"width:100,height:50"``. Pillow is an optional dependency of
the local stand-in: without it the render routes answer a clear error instead of the original bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from workbench.local.storage_errors import StorageApiError, bad_request

__all__ = ["MAX_DIMENSION", "MAX_SOURCE_BYTES", "Transform", "render"]

MAX_DIMENSION = 2500
MAX_SOURCE_BYTES = 25 * 1024 * 1024  # Supabase's limit on the size of an image to transform
RESIZE_MODES = ("cover", "contain", "fill")
FORMATS = {"origin": None, "avif": "AVIF", "webp": "WEBP", "png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}
MIME = {"AVIF": "image/avif", "WEBP": "image/webp", "PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}
_KEYS = ("width", "height", "resize", "quality", "format")


@dataclass(frozen=True)
class Transform:
    width: int | None = None
    height: int | None = None
    resize: str = "cover"
    quality: int = 80
    format: str = "origin"

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> Transform:
        """From query parameters or a signed URL's ``transform`` object; bad values are a 400."""
        width = _dimension(params.get("width"), "width")
        height = _dimension(params.get("height"), "height")
        resize = str(params.get("resize") or "cover").lower()
        if resize not in RESIZE_MODES:
            raise bad_request(f"resize must be one of {', '.join(RESIZE_MODES)}")
        quality = _integer(params.get("quality"), "quality", 20, 100) or 80
        fmt = str(params.get("format") or "origin").lower()
        if fmt not in FORMATS:
            raise bad_request(f"format must be one of {', '.join(FORMATS)}")
        return cls(width, height, resize, quality, fmt)

    @classmethod
    def from_text(cls, text: str) -> Transform:
        """A signed URL's ``transformations`` claim (``"width:100,height:50"``)."""
        pairs = dict(part.split(":", 1) for part in text.split(",") if ":" in part)
        return cls.parse({k: v for k, v in pairs.items() if k in _KEYS})

    def as_text(self) -> str:
        values = {"width": self.width, "height": self.height, "resize": self.resize}
        values |= {"quality": self.quality, "format": self.format}
        return ",".join(f"{k}:{v}" for k, v in values.items() if v is not None)


def _integer(value: object, name: str, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    if not low <= number <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return number


def _dimension(value: object, name: str) -> int | None:
    return _integer(value, name, 1, MAX_DIMENSION)


def render(data: bytes, transform: Transform) -> tuple[bytes, str]:
    """The transformed image and its MIME type."""
    try:
        from PIL import Image, ImageOps
    except ModuleNotFoundError:
        raise StorageApiError(
            400,
            "FeatureNotEnabled",
            "Image transformation needs Pillow in the workbench's environment: pip install pillow",
        ) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise StorageApiError(413, "EntityTooLarge", "Image too large to transform (over 25 MB)", "Payload too large")
    Image.MAX_IMAGE_PIXELS = 50_000_000  # refuse decompression bombs instead of allocating them
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        source_format = getattr(image, "format", None) or "PNG"
        image.load()
    except (OSError, Image.DecompressionBombError, ValueError):
        raise StorageApiError(
            422, "InvalidImage", "The object is not an image Pillow can read", "Unprocessable Entity"
        ) from None
    target = FORMATS[transform.format] or source_format
    if target not in MIME:
        target = "PNG"
    if transform.width or transform.height:
        width = transform.width or max(1, round(image.width * (transform.height or 1) / image.height))
        height = transform.height or max(1, round(image.height * (transform.width or 1) / image.width))
        if transform.resize == "fill":
            image = image.resize((width, height))
        elif transform.resize == "contain":
            image = ImageOps.contain(image, (width, height))
        else:
            image = ImageOps.fit(image, (width, height))
    if target == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    try:
        image.save(out, format=target, quality=transform.quality)
    except (KeyError, OSError):
        raise StorageApiError(
            400, "InvalidRequest", f"This Pillow cannot write {target}: choose another format"
        ) from None
    return out.getvalue(), MIME[target]

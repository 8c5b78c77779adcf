"""Real, recognisable, deterministic images for the mock's download URLs.

Each image is a soft colourful background seeded from a sha256 of the request's fields, with the
prompt's first words, the size, the sample number and a "SD3.5 mock" mark written on it, so a person
looking at a downloaded file can tell which request and sample it came from.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import random
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, astuple

from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["ImageSpec", "render_image", "ImageCache", "CONTENT_TYPES", "FORMATS", "MAX_SIDE"]

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
FORMATS = frozenset(CONTENT_TYPES)

# A guard, not a product limit: validation enforces the real bounds (256..1536); this only stops a
# misconfigured profile from allocating gigabytes.
MAX_SIDE = 4096

# zlib level for PNG, measured on a 1024x1024 render (encode only): 0: 17 ms/3.0 MiB, 1: 25 ms/247 KiB,
# 3: 31 ms/226 KiB, 6 (Pillow's default): 53 ms/190 KiB, 9: 437 ms/176 KiB. Level 1 halves the
# time of 6 for ~30 % more bytes, which is the right trade for a loopback mock.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 85
WEBP_QUALITY = 80
WEBP_METHOD = 2  # libwebp effort 0..6; 2 keeps a 1536 render well under the PNG time

_PROMPT_SCAN_CHARS = 2000  # only the start of a huge prompt can ever be shown
_PROMPT_MAX_LINES = 4
_ELLIPSIS = "…"
_MARK = "SD3.5 mock"
_TEXT_MIN_SIDE = 64


@dataclass(frozen=True)
class ImageSpec:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    index: int  # 0-based sample index
    samples: int

    def seed(self) -> bytes:
        """sha256 over every field, so any change in the request changes the picture."""
        fields = list(astuple(self))
        # 7 == 7.0 makes equal cache keys, so they must make equal pictures too
        fields[5] = float(self.guidance_scale)
        data = json.dumps(fields, ensure_ascii=True, allow_nan=True)
        # surrogatepass: a lone surrogate from a JSON body must not crash hashing
        return hashlib.sha256(data.encode("utf-8", "surrogatepass")).digest()


# --- text helpers -----------------------------------------------------------------------------

# The default scalable font (Aileron subset) covers ASCII and a few signs only; folding common
# non-ASCII punctuation and accented Latin keeps most Western prompts legible instead of boxes.
_FOLD = str.maketrans({
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u00d7": "x", "\u201a": ",", "\u201e": "\"", "\u2032": "'", "\u2033": "\"",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
})


def clean_text(text: str, limit: int = _PROMPT_SCAN_CHARS) -> str:
    """Printable, single-line, glyph-friendly text from any string (control chars, surrogates)."""
    if not isinstance(text, str):
        text = str(text)
    out = []
    for ch in text[:limit].translate(_FOLD):
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp"):
            # control chars and line breaks become spaces so words do not fuse; surrogates go
            out.append(" " if cat != "Cs" else "")
            continue
        if ord(ch) > 127:  # é -> e, ﬁ -> fi, ² -> 2; anything else stays (a box at worst)
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if folded and folded.isascii():
                ch = folded
        out.append(ch)
    return " ".join("".join(out).split())


_tls = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont:
    """Per-thread font cache: loading is cheap but a FreeType face is not safe to share."""
    cache = getattr(_tls, "fonts", None)
    if cache is None:
        cache = _tls.fonts = {}
    font = cache.get(size)
    if font is None:
        if len(cache) > 64:
            cache.clear()
        font = cache[size] = ImageFont.load_default(size=size)
    return font


def _length(text: str, font) -> float:
    # '×' is missing from the default font; it is drawn by hand at the width of an 'x'
    return font.getlength(text.replace("×", "x"))


def _fit_prefix(text: str, font, max_width: float, suffix: str = "") -> int:
    """Longest n such that text[:n] + suffix fits (binary search: getlength is monotone enough)."""
    # no glyph of this font is narrower than ~0.18 em, so longer prefixes need not be measured
    lo, hi = 0, min(len(text), int(max_width / (font.size * 0.15)) + 2)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _length(text[:mid] + suffix, font) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def wrap_text(text: str, font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; overlong words are broken; the last line ends with '…' if text remains."""
    words = text.split()
    lines: list[str] = []
    i = 0
    while i < len(words) and len(lines) < max_lines:
        line = ""
        while i < len(words):
            candidate = words[i] if not line else f"{line} {words[i]}"
            if _length(candidate, font) <= max_width:
                line = candidate
                i += 1
                continue
            if not line:  # a single word wider than the line: break it
                n = max(1, _fit_prefix(words[i], font, max_width))
                line, words[i] = words[i][:n], words[i][n:]
                if not words[i]:
                    i += 1
            break
        lines.append(line)
    if i < len(words) and lines:
        last = lines[-1]
        n = _fit_prefix(last, font, max_width, _ELLIPSIS)
        lines[-1] = last[:n].rstrip() + _ELLIPSIS
    return lines


# --- layout and drawing -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Text:
    text: str
    size: int
    xy: tuple[int, int]
    fill: tuple[int, int, int]


def _layout(spec: ImageSpec) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int], list[_Text]]:
    """Where every piece of text goes (pure, so tests can check that nothing overflows).

    Returns the text panel box, the mark's pill box, and the texts. The font shrinks until the
    block fits the height, so wide, short images still get the largest legible text.
    """
    w, h = spec.width, spec.height
    s = min(w, h)
    margin = max(4, round(s * 0.06))
    pad = max(3, round(s * 0.03))
    inner = w - 2 * margin - 2 * pad
    m_size = max(7, round(min((w * h) ** 0.5 / 36, s / 16)))
    room = h - 2 * (margin + pad) - round(m_size * 1.6)  # keep the mark's corner free

    prompt = clean_text(spec.prompt) or "(empty prompt)"
    info = [
        f"{spec.width}×{spec.height}",
        f"sample {spec.index + 1} of {spec.samples}",
        f"{spec.num_inference_steps} steps · guidance {spec.guidance_scale:g}",
    ]
    p_size = max(8, round(min((w * h) ** 0.5 / 13, w / 11, h / 5)))
    while True:
        i_size = max(7, round(p_size * 0.52))
        p_font, i_font = _font(p_size), _font(i_size)
        lines = wrap_text(prompt, p_font, inner, _PROMPT_MAX_LINES)
        p_lh, i_lh, gap = round(p_size * 1.25), round(i_size * 1.3), round(i_size * 0.6)
        block_h = len(lines) * p_lh + gap + len(info) * i_lh
        if block_h <= room or p_size <= 8:
            break
        p_size = max(8, int(p_size * 0.9))
    info = [ln if _length(ln, i_font) <= inner else
            ln[:_fit_prefix(ln, i_font, inner, _ELLIPSIS)] + _ELLIPSIS for ln in info]

    top = max(margin + pad, (h - round(m_size * 1.6) - block_h) // 2)
    texts: list[_Text] = []
    y = top
    for ln in lines:
        texts.append(_Text(ln, p_size, (margin + pad, y), (255, 255, 255)))
        y += p_lh
    y += gap
    for ln in info:
        texts.append(_Text(ln, i_size, (margin + pad, y), (225, 230, 240)))
        y += i_lh
    panel = (margin, top - pad, w - margin, min(h, y + pad))

    m_font = _font(m_size)
    mark_w = round(m_font.getlength(_MARK))
    m_pad = max(2, m_size // 3)
    mx = w - margin // 2 - m_pad - mark_w
    my = h - margin // 2 - m_pad - round(m_size * 1.15)
    pill = (mx - m_pad, my - m_pad // 2, mx + mark_w + m_pad, my + round(m_size * 1.15) + m_pad)
    texts.append(_Text(_MARK, m_size, (mx, my), (255, 255, 255)))
    return panel, pill, texts


def _draw_text(draw: ImageDraw.ImageDraw, t: _Text) -> None:
    font = _font(t.size)
    if "×" not in t.text:
        draw.text(t.xy, t.text, font=font, fill=t.fill)
        return
    x, y = t.xy
    for k, part in enumerate(t.text.split("×")):
        if k:
            # a hand-drawn multiplication sign in the box an 'x' would occupy
            left, top, right, bottom = draw.textbbox((x, y), "x", font=font)
            inset = max(1, round((right - left) * 0.12))
            width = max(1, round(t.size / 14))
            draw.line((left + inset, top + inset, right - inset, bottom - inset), fill=t.fill, width=width)
            draw.line((left + inset, bottom - inset, right - inset, top + inset), fill=t.fill, width=width)
            x += font.getlength("x")
        if part:
            draw.text((x, y), part, font=font, fill=t.fill)
            x += font.getlength(part)


def _background(spec: ImageSpec, rng: random.Random) -> Image.Image:
    """Blobs on a four-colour gradient drawn tiny, blurred, then upscaled: soft and fast."""
    w, h = spec.width, spec.height
    side = 64
    sw, sh = (side, max(2, round(side * h / w))) if w >= h else (max(2, round(side * w / h)), side)
    hue = rng.random()

    def colour(shift: float, light: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb((hue + shift) % 1.0, 0.55 + 0.4 * rng.random(), light)
        return round(r * 255), round(g * 255), round(b * 255)

    corners = Image.new("RGB", (2, 2))
    corners.putdata([colour(0.0, 0.9), colour(0.15, 0.75), colour(0.35, 0.7), colour(0.55, 0.85)])
    small = corners.resize((sw, sh), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(small, "RGBA")
    for _ in range(5 + rng.randrange(5)):
        cx, cy = rng.random() * sw, rng.random() * sh
        r = (0.08 + 0.25 * rng.random()) * max(sw, sh)
        fill = colour(rng.random(), 0.6 + 0.4 * rng.random()) + (90 + rng.randrange(110),)
        if rng.random() < 0.6:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.regular_polygon((cx, cy, r), 3 + rng.randrange(4), rotation=rng.random() * 360, fill=fill)
    small = small.filter(ImageFilter.GaussianBlur(1.5))  # no stair steps after upscaling
    return small.resize((w, h), Image.Resampling.BICUBIC)


def _darken(img: Image.Image, box: tuple[int, int, int, int], radius: int) -> None:
    """Darken a rounded box in place so white text is legible on any colour."""
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(img.width, box[2]), min(img.height, box[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    box = (x0, y0, x1, y1)
    region = img.crop(box).point(lambda v: v * 2 // 5)
    mask = Image.new("L", region.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, region.width - 1, region.height - 1),
                                           radius=radius, fill=255)
    img.paste(region, (x0, y0), mask)


def _compose(spec: ImageSpec) -> Image.Image:
    rng = random.Random(spec.seed())
    img = _background(spec, rng)
    if spec.width < _TEXT_MIN_SIDE or spec.height < _TEXT_MIN_SIDE:
        return img  # too small for legible text (never the case within the API's 256..1536)
    panel, pill, texts = _layout(spec)
    _darken(img, panel, max(2, min(panel[2] - panel[0], panel[3] - panel[1]) // 10))
    _darken(img, pill, max(1, (pill[3] - pill[1]) // 2))
    draw = ImageDraw.Draw(img)
    for t in texts:
        _draw_text(draw, t)
    return img


def _check(spec: ImageSpec, fmt: str) -> None:
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {sorted(CONTENT_TYPES)}")
    for name in ("width", "height"):
        v = getattr(spec, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIDE:
            raise ValueError(f"{name} must be an integer in 1..{MAX_SIDE}, got {v!r}")


def render_image(spec: ImageSpec, fmt: str) -> bytes:
    """Encoded image bytes; the same spec gives the same bytes with the same Pillow build."""
    _check(spec, fmt)
    img = _compose(spec)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "jpeg":
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return buf.getvalue()


# --- cache ------------------------------------------------------------------------------------

class _Flight:
    """One render in progress; concurrent requests for the same key wait for it, not re-render."""

    __slots__ = ("done", "data", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class ImageCache:
    """Thread-safe LRU of encoded images, bounded by total bytes and by entry count.

    Rendering happens outside the lock; concurrent misses on one key share a single render.
    Waiters on a shared render count as hits (they did not render). An image larger than
    max_bytes is returned but never stored.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_entries: int = 256):
        if max_bytes < 0 or max_entries < 0:
            raise ValueError("max_bytes and max_entries must be >= 0")
        self.max_bytes = int(max_bytes)
        self.max_entries = int(max_entries)
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[ImageSpec, str], bytes] = OrderedDict()
        self._flights: dict[tuple[ImageSpec, str], _Flight] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._generation = 0  # bumped by clear(), so renders started before it are not stored

    def get(self, spec: ImageSpec, fmt: str) -> bytes:
        _check(spec, fmt)  # fail fast on bad input, before anyone waits on a flight
        key = (spec, fmt)
        with self._lock:
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
                self._hits += 1
                return data
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
                self._misses += 1
                generation = self._generation
            else:
                self._hits += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.data  # type: ignore[return-value]
        try:
            data = render_image(spec, fmt)
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()
            raise
        flight.data = data
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if generation == self._generation:
                self._store(key, data)
        flight.done.set()
        return data

    def _store(self, key, data: bytes) -> None:
        size = len(data)
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._data[key] = data
        self._bytes += size
        while self._data and (self._bytes > self.max_bytes or len(self._data) > self.max_entries):
            _, evicted = self._data.popitem(last=False)
            self._bytes -= len(evicted)

    def stats(self) -> dict:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "entries": len(self._data),
                    "bytes": self._bytes, "max_bytes": self.max_bytes}

    def clear(self) -> None:
        """Forget every entry and the counters (used by the mock's reset)."""
        with self._lock:
            self._data.clear()
            self._bytes = self._hits = self._misses = 0
            self._generation += 1

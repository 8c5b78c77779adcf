"""mockserver.images: exact sizes, determinism, robustness to any prompt, and the LRU cache."""

from __future__ import annotations

import io
import random
import threading
import unicodedata

import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageChops, ImageDraw

from sd35_twin.mockserver import images
from sd35_twin.mockserver.images import CONTENT_TYPES, ImageCache, ImageSpec, render_image

PROMPT = "A majestic lighthouse on a cliff at sunset, crashing waves, cinematic lighting, ultra detailed"


def spec(prompt: str = PROMPT, width: int = 256, height: int = 256, index: int = 0, samples: int = 2,
         **kw) -> ImageSpec:
    fields = dict(prompt=prompt, negative_prompt="blurry", width=width, height=height,
                  num_inference_steps=28, guidance_scale=7.5, index=index, samples=samples)
    fields.update(kw)
    return ImageSpec(**fields)


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --- render_image -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", [(256, 256), (1024, 1024), (1536, 1536), (1536, 256), (256, 1536), (512, 768)])
def test_size_and_format_are_exact(size, fmt):
    img = open_image(render_image(spec(width=size[0], height=size[1]), fmt))
    assert img.size == size
    assert img.format == fmt.upper()
    assert img.mode == "RGB"


def test_content_types_match_what_is_rendered():
    assert CONTENT_TYPES == {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
    for fmt, mime in CONTENT_TYPES.items():
        assert Image.MIME[open_image(render_image(spec(), fmt)).format] == mime


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_deterministic_for_equal_specs(fmt):
    assert render_image(spec(), fmt) == render_image(spec(), fmt)


def test_equal_specs_render_equal_bytes_even_int_vs_float():
    # the cache treats them as one key, so the picture must not depend on which came first
    assert spec(guidance_scale=7) == spec(guidance_scale=7.0)
    assert render_image(spec(guidance_scale=7), "png") == render_image(spec(guidance_scale=7.0), "png")


def test_samples_and_fields_change_the_image():
    base = render_image(spec(index=0), "png")
    assert render_image(spec(index=1), "png") != base
    assert render_image(spec(prompt="a cat"), "png") != base
    assert render_image(spec(guidance_scale=3.0), "png") != base
    # not just different bytes: different pixels (background seeded per sample)
    a, b = open_image(base), open_image(render_image(spec(index=1), "png"))
    assert a.getpixel((2, 2)) != b.getpixel((2, 2))


def test_image_is_colourful_with_light_text_on_a_dark_panel():
    """Exactly as drawn: the seeded background everywhere but the two boxes; inside the panel, that background
    at 2/5 of its brightness, with white text drawn over it that only ever lightens a pixel."""
    s = spec(width=1024, height=1024)
    img = open_image(render_image(s, "png")).convert("RGB")
    background = images._background(s, random.Random(s.seed()))
    assert len(background.resize((16, 16)).getcolors(256)) > 128  # a gradient with blobs: most cells unlike
    panel, pill, _ = images._layout(s)
    outside = Image.new("L", img.size, 255)
    ImageDraw.Draw(outside).rectangle(panel, fill=0)
    ImageDraw.Draw(outside).rectangle(pill, fill=0)
    assert ImageChops.multiply(ImageChops.difference(img, background).convert("L"), outside).getbbox() is None
    corner = max(2, min(panel[2] - panel[0], panel[3] - panel[1]) // 10)  # the panel's rounded corners
    inner = (panel[0] + corner, panel[1] + corner, panel[2] - corner, panel[3] - corner)
    darkened = background.crop(inner).point(lambda v: v * 2 // 5)
    drawn = img.crop(inner)
    assert ImageChops.subtract(darkened, drawn).getbbox() is None          # text only lightens
    assert ImageChops.difference(darkened, drawn).getbbox() is not None    # and there is text
    assert [hi for _, hi in drawn.getextrema()] == [255, 255, 255]          # white at its core
    assert [hi for _, hi in darkened.getextrema()] <= [102, 102, 102]       # the panel itself is dark


@pytest.mark.parametrize("fmt", ["gif", "PNG", "jpg", "", None])
def test_render_rejects_unknown_format(fmt):
    with pytest.raises(ValueError):
        render_image(spec(), fmt)


@pytest.mark.parametrize("w,h", [(0, 256), (256, -1), (images.MAX_SIDE + 1, 256), (True, 256)])
def test_render_rejects_absurd_sizes(w, h):
    with pytest.raises(ValueError):
        render_image(spec(width=w, height=h), "png")


@pytest.mark.parametrize("w,h", [(1, 1), (7, 300), (300, 5), (63, 63), (64, 64), (100, 70)])
def test_tiny_images_still_render(w, h):
    assert open_image(render_image(spec(width=w, height=h), "png")).size == (w, h)


NASTY = [
    "",
    "   \t\n  ",
    "café naïve Ünïcödé — “quotes” ﬁne ½ x²",
    "שלום עולם مرحبا بالعالم",  # RTL
    "😀👩‍👩‍👧🏳️‍🌈 emoji only",
    "日本語の文章です中文汉字한국어" * 20,  # no spaces at all
    "\x00\x01\x1b[31mred\x7f\u0085\u2028\u2029 text",
    "\u202e reversed \u202d\u200b\u200d\ufeff",
    "\ud800 lone surrogate \udfff",
    "\U0010ffff\ue000 private and unassigned \U000e0001",
    "a\u0301" * 500,  # combining marks
    "x" * 100_000,
    "word " * 20_000,
    "😀" * 50_000,
]


@pytest.mark.parametrize("prompt", NASTY, ids=range(len(NASTY)))
def test_any_unicode_prompt_renders(prompt):
    s = spec(prompt=prompt, negative_prompt=prompt)
    assert open_image(render_image(s, "png")).size == (256, 256)


def test_clean_text_strips_control_chars_and_folds_latin():
    cleaned = images.clean_text("a\x00b\tc\nd\x1b\u2028e \ud800 café ﬁ x²")
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in cleaned)
    assert cleaned == "a b c d e cafe fi x2"
    assert len(images.clean_text("y" * 100_000)) <= 2000


def text_boxes(s: ImageSpec):
    panel, pill, texts = images._layout(s)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return panel, pill, texts, [draw.textbbox(t.xy, t.text.replace("×", "x"), font=images._font(t.size))
                                for t in texts]


@pytest.mark.parametrize("size", [(256, 256), (1024, 1024), (1536, 1536), (1536, 256), (256, 1536), (264, 1000)])
@pytest.mark.parametrize("prompt", [PROMPT, "x" * 5000, "W" * 3 + " " + "M" * 400, "short", NASTY[5], NASTY[3]],
                         ids=["sentence", "one-long-word", "wide-glyphs", "short", "cjk", "rtl"])
def test_text_never_overflows(size, prompt):
    s = spec(prompt=prompt, width=size[0], height=size[1], num_inference_steps=50, guidance_scale=12.25)
    panel, pill, texts, boxes = text_boxes(s)
    w, h = size
    assert 0 <= panel[0] < panel[2] <= w and 0 <= panel[1] < panel[3] <= h
    for t, (x0, y0, x1, y1) in zip(texts, boxes):
        assert 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h, (t, size)
        if t.text != images._MARK:
            assert panel[0] <= x0 and x1 <= panel[2] and panel[1] <= y0 and y1 <= panel[3], t
    prompt_lines = [t.text for t in texts[:-4]]
    assert 1 <= len(prompt_lines) <= 4
    info = [t.text for t in texts[-4:]]
    assert info == [f"{w}×{h}", "sample 1 of 2", "50 steps · guidance 12.25", "SD3.5 mock"]


def test_long_prompt_is_truncated_with_ellipsis():
    _, _, texts, _ = text_boxes(spec(prompt=PROMPT * 20))
    lines = [t.text for t in texts[:-4]]
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert " ".join(lines).startswith("A majestic lighthouse")
    _, _, texts, _ = text_boxes(spec(prompt="a small cat", width=1024, height=1024))
    assert texts[0].text == "a small cat"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300), width=st.integers(40, 1500), lines=st.integers(1, 5))
def test_wrap_text_lines_always_fit(text, width, lines):
    font = images._font(24)
    out = images.wrap_text(images.clean_text(text), font, width, lines)
    assert len(out) <= lines
    for line in out:
        # a line may only exceed the width when it is one character that does not fit on its own
        assert images._length(line, font) <= width or (len(line) == 1 and images._length(line, font) > width)


# --- ImageCache ---------------------------------------------------------------------------------

class FakeRender:
    """Stands in for render_image: controllable sizes, counts calls, can block or fail."""

    def __init__(self, size_of=lambda s: 100):
        self.size_of = size_of
        self.calls = 0
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self, s: ImageSpec, fmt: str) -> bytes:
        with self.lock:
            self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise RuntimeError("render failed")
        return (f"{s.prompt}|{s.index}|{fmt}|".encode() * 1000)[: self.size_of(s)]


@pytest.fixture
def fake(monkeypatch):
    f = FakeRender()
    monkeypatch.setattr(images, "render_image", f)
    return f


def test_cache_hits_and_misses(fake):
    cache = ImageCache()
    first = cache.get(spec(), "png")
    assert cache.get(spec(), "png") is first
    cache.get(spec(), "jpeg")  # the format is part of the key
    assert fake.calls == 2
    assert cache.stats() == {"hits": 1, "misses": 2, "entries": 2, "bytes": 200, "max_bytes": 64 * 1024 * 1024}


def test_cache_evicts_least_recently_used_by_entries(fake):
    cache = ImageCache(max_entries=2)
    a, b, c = spec(prompt="a"), spec(prompt="b"), spec(prompt="c")
    cache.get(a, "png"); cache.get(b, "png"); cache.get(a, "png")  # a is now the most recent
    cache.get(c, "png")  # evicts b
    assert cache.stats()["entries"] == 2
    calls = fake.calls
    cache.get(a, "png"); cache.get(c, "png")
    assert fake.calls == calls  # both still cached
    cache.get(b, "png")
    assert fake.calls == calls + 1  # b had been evicted


def test_cache_evicts_by_bytes(fake):
    fake.size_of = lambda s: {"a": 400, "b": 300, "c": 500}[s.prompt]
    cache = ImageCache(max_bytes=1000)
    cache.get(spec(prompt="a"), "png"); cache.get(spec(prompt="b"), "png")
    assert cache.stats()["bytes"] == 700
    cache.get(spec(prompt="c"), "png")  # 1200 > 1000: a (the oldest) goes
    assert cache.stats()["bytes"] == 800 and cache.stats()["entries"] == 2
    cache.get(spec(prompt="b"), "png")
    assert fake.calls == 3
    cache.get(spec(prompt="a"), "png")
    assert fake.calls == 4


def test_oversize_item_is_returned_but_not_cached(fake):
    fake.size_of = lambda s: 5000 if s.prompt == "big" else 10
    cache = ImageCache(max_bytes=1000)
    cache.get(spec(prompt="small"), "png")
    data = cache.get(spec(prompt="big"), "png")
    assert len(data) == 5000
    st_ = cache.stats()
    assert st_["entries"] == 1 and st_["bytes"] == 10  # the small entry survived
    cache.get(spec(prompt="big"), "png")
    assert fake.calls == 3 and cache.stats()["misses"] == 3


def test_zero_entries_caches_nothing(fake):
    cache = ImageCache(max_entries=0)
    cache.get(spec(), "png"); cache.get(spec(), "png")
    assert fake.calls == 2 and cache.stats()["entries"] == 0


def test_clear_forgets_entries_and_counters(fake):
    cache = ImageCache()
    cache.get(spec(), "png"); cache.get(spec(), "png")
    cache.clear()
    assert cache.stats() == {"hits": 0, "misses": 0, "entries": 0, "bytes": 0, "max_bytes": 64 * 1024 * 1024}
    cache.get(spec(), "png")
    assert fake.calls == 2


def test_cache_rejects_unknown_format_without_rendering(fake):
    with pytest.raises(ValueError):
        ImageCache().get(spec(), "gif")
    assert fake.calls == 0


def run_threads(n, target):
    results, errors = [None] * n, []

    def wrap(i):
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_concurrent_misses_share_one_render(fake):
    cache = ImageCache()
    fake.release.clear()
    leader = threading.Thread(target=cache.get, args=(spec(), "png"))
    leader.start()
    assert fake.started.wait(10)  # the leader is rendering and its flight is registered
    barrier = threading.Barrier(8)

    def follower(i):
        barrier.wait()
        if i == 0:
            fake.release.set()
        return cache.get(spec(), "png")

    results, errors = run_threads(8, follower)
    leader.join(10)
    assert not errors and len(set(results)) == 1
    assert fake.calls == 1
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 8


def test_failed_render_propagates_to_waiters_and_is_not_cached(fake):
    cache = ImageCache()
    fake.fail = True
    fake.release.clear()
    leader_errors = []
    leader = threading.Thread(target=lambda: leader_errors.append(pytest.raises(RuntimeError, cache.get, spec(), "png")))
    leader.start()
    assert fake.started.wait(10)

    def follower(i):
        if i == 0:
            fake.release.set()
        return cache.get(spec(), "png")

    _, errors = run_threads(4, follower)
    leader.join(10)
    assert len(leader_errors) == 1 and len(errors) == 4
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert cache.stats()["entries"] == 0
    fake.fail = False
    assert cache.get(spec(), "png")  # a later request renders afresh


def test_render_finishing_after_clear_is_not_stored(fake):
    cache = ImageCache()
    fake.release.clear()
    t = threading.Thread(target=cache.get, args=(spec(), "png"))
    t.start()
    assert fake.started.wait(10)
    cache.clear()
    fake.release.set()
    t.join(10)
    assert cache.stats()["entries"] == 0


def test_thread_safety_with_real_renders():
    cache = ImageCache(max_entries=3)
    specs = [spec(prompt=f"thread {k}", width=256, height=256) for k in range(4)]
    expected = {s: render_image(s, "jpeg") for s in specs}

    def work(i):
        out = []
        for j in range(6):
            s = specs[(i + j) % len(specs)]
            out.append(cache.get(s, "jpeg") == expected[s])
        return all(out)

    results, errors = run_threads(12, work)
    assert not errors and all(results)
    st_ = cache.stats()
    assert st_["hits"] + st_["misses"] == 12 * 6
    assert st_["entries"] <= 3
    with cache._lock:  # the byte account matches what is stored
        assert st_["bytes"] == sum(len(v) for v in cache._data.values())


def test_same_spec_from_many_threads_renders_once():
    cache = ImageCache()
    barrier = threading.Barrier(10)

    def work(i):
        barrier.wait()
        return cache.get(spec(prompt="same"), "png")

    results, errors = run_threads(10, work)
    assert not errors and len(set(results)) == 1
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 9

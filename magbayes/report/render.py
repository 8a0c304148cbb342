"""A report as a list of blocks, written out as Markdown and as self-contained HTML.

The report's content is built once, as :class:`Heading`, :class:`Paragraph`,
:class:`Table`, :class:`Image` ... blocks; :func:`to_markdown` and :func:`to_html` write
the same blocks in each format. The HTML embeds every figure as a base64 PNG and renders
display equations with matplotlib's mathtext (falling back to the LaTeX source), so the
file opens anywhere, offline, with nothing beside it.

Inline markup in paragraph text: ``**bold**``, ```code``` and ``$latex$``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    """A section heading (level 1 = title)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text with inline markup."""

    text: str


@dataclass(frozen=True)
class BulletList:
    """A bulleted list; each item may use inline markup."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table: the frame's cells are printed as they are (format them before)."""

    frame: pd.DataFrame
    caption: str = ""
    index: bool = False


@dataclass(frozen=True)
class Image:
    """A figure: ``path`` is read for the HTML, ``relative`` is linked from Markdown."""

    path: Path
    relative: str
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    """A preformatted block (commands, spec text)."""

    text: str
    language: str = ""


@dataclass(frozen=True)
class Math:
    """A display equation in LaTeX; lines are rendered one under the other."""

    latex: str


@dataclass
class Document:
    """The blocks of a report, in order."""

    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        """Append blocks."""
        self.blocks.extend(blocks)


# ----------------------------------------------------------------------------- Markdown


def _md_cell(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(block: Table) -> str:
    frame = block.frame.reset_index() if block.index else block.frame
    header = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    caption = f"*{block.caption}*\n\n" if block.caption else ""
    return caption + "\n".join([header, rule, *rows])


def to_markdown(document: Document) -> str:
    """The document as GitHub-flavoured Markdown (figures linked by relative path)."""
    parts = [f"# {document.title}"]
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, BulletList):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_md_table(block))
        elif isinstance(block, Image):
            text = f"![{block.alt}]({block.relative})"
            if block.caption:
                text += f"\n\n*{block.caption}*"
            parts.append(text)
        elif isinstance(block, Code):
            parts.append(f"```{block.language}\n{block.text.rstrip()}\n```")
        elif isinstance(block, Math):
            parts.append(f"```math\n{block.latex.strip()}\n```")
        else:
            raise TypeError(f"unknown report block {block!r}")
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 60em;
       margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
code { background: #f6f8fa; padding: 0 .2em; font-size: .9em; }
.math { font-family: "Latin Modern Math", "Cambria Math", serif; }
.equation { margin: 1em 0; }
.equation img { display: block; margin: .2em 0; }
img.inline-math { vertical-align: middle; }
"""

_INLINE = re.compile(r"(`[^`]+`|\$[^$]+\$|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)")


def inline_html(text: str) -> str:
    """Inline markup (``**bold**``, ```code```, ``$latex$``) as escaped HTML."""
    out = []
    for piece in _INLINE.split(text):
        if not piece:
            continue
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
        elif piece.startswith("$") and piece.endswith("$") and len(piece) > 1:
            out.append(_inline_math(piece[1:-1]))
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 3:
            out.append(f"<strong>{html.escape(piece[2:-2])}</strong>")
        elif piece.startswith("*") and piece.endswith("*") and len(piece) > 2:
            out.append(f"<em>{html.escape(piece[1:-1])}</em>")
        else:
            out.append(html.escape(piece))
    return "".join(out)


def _inline_math(latex: str) -> str:
    images = equation_images(latex, dpi=110)
    if images and len(images) == 1:
        return (
            f'<img class="inline-math" src="{_png_data_uri(images[0])}" alt="{html.escape(latex)}">'
        )
    return f'<span class="math">{html.escape(latex)}</span>'


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


#: LaTeX that matplotlib's mathtext does not know, and a close equivalent it does.
_MATHTEXT_SUBSTITUTES = (
    (r"\Big(", "("),
    (r"\Big)", ")"),
    (r"\big(", "("),
    (r"\big)", ")"),
    (r"\tfrac", r"\frac"),
    (r"\dfrac", r"\frac"),
    (r"\ ", r"\;"),
    (r"\operatorname", r"\mathrm"),
)

#: Whole-word commands to rename for mathtext (``\ge`` is ``\geq`` there).
_MATHTEXT_COMMANDS = {r"\ge": r"\geq", r"\le": r"\leq", r"\ne": r"\neq"}


def equation_images(latex: str, dpi: int = 130) -> list[bytes] | None:
    """PNG images of a display equation, one per line; ``None`` if mathtext cannot draw it."""
    from matplotlib import mathtext

    images = []
    for line in latex.strip().splitlines():
        line = line.strip()
        if not line:
            continue
        for old, new in _MATHTEXT_SUBSTITUTES:
            line = line.replace(old, new)
        line = re.sub(
            r"\\[a-zA-Z]+", lambda m: _MATHTEXT_COMMANDS.get(m.group(0), m.group(0)), line
        )
        buffer = io.BytesIO()
        try:
            mathtext.math_to_image(f"${line}$", buffer, dpi=dpi, format="png")
        except Exception:  # noqa: BLE001 (fall back to the LaTeX source)
            return None
        images.append(buffer.getvalue())
    return images


def _html_table(block: Table) -> str:
    frame = block.frame.reset_index() if block.index else block.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = "".join(f"<td>{inline_html(_md_cell(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{inline_html(block.caption)}</caption>" if block.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_html(document: Document) -> str:
    """The document as one self-contained HTML page (figures embedded as base64 PNG)."""
    body = [f"<h1>{html.escape(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f'<h{level} id="{_slug(block.text)}">{inline_html(block.text)}</h{level}>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, BulletList):
            items = "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            uri = _png_data_uri(Path(block.path).read_bytes())
            caption = (
                f"<figcaption>{inline_html(block.caption)}</figcaption>" if block.caption else ""
            )
            body.append(
                f'<figure><img src="{uri}" alt="{html.escape(block.alt)}">{caption}</figure>'
            )
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
        elif isinstance(block, Math):
            images = equation_images(block.latex)
            if images:
                tags = "".join(
                    f'<img src="{_png_data_uri(png)}" alt="{html.escape(block.latex.strip())}">'
                    for png in images
                )
                body.append(f'<div class="equation">{tags}</div>')
            else:
                body.append(f'<pre class="math">{html.escape(block.latex.strip())}</pre>')
        else:
            raise TypeError(f"unknown report block {block!r}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(document.title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )

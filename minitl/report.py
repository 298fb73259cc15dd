"""What a lesson calls to show and record its results: tables, figures, notes, key numbers.

A lesson uses it like this::

    from minitl import report

    out = report.output_dir("from_scratch")     # ./minitl_output/from_scratch/ (or $MINITL_OUTPUT)
    print("figures go to", out)
    epochs = 2 if report.fast_mode() else 20     # `minitl lesson 2 --fast` sets MINITL_FAST=1
    ...
    report.table(rows, headers=["epoch", "loss", "accuracy"], title="Learning curve")
    report.figure(fig, "learning_curve", "Training and test accuracy per epoch")
    report.metric("test_accuracy", 0.884)

Everything is printed as it happens. When ``$MINITL_REPORT`` names a file (``minitl tour`` sets
it), each call also appends one JSON line there, from which the tour writes its report.
Without it nothing else is written, so a lesson runs the same as a plain script.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

_current_slug = None  # the lesson whose output_dir was asked for last


def fast_mode() -> bool:
    """True when the lesson should run on small data (``--fast``, tests, a quick tour)."""
    return os.environ.get("MINITL_FAST", "").strip().lower() in ("1", "true", "yes", "on")


def current_lesson() -> str:
    """The lesson's slug: the last one given to output_dir(), else the runner's, else "scratch"."""
    return _current_slug or os.environ.get("MINITL_LESSON") or "scratch"


def set_current_lesson(slug):
    """Make ``slug`` the current lesson (None: the runner's); returns the previous one."""
    global _current_slug
    previous, _current_slug = _current_slug, slug
    return previous


def output_dir(lesson_slug: str | None = None) -> Path:
    """The folder for a lesson's figures (created): ``$MINITL_OUTPUT`` or ./minitl_output, then the slug."""
    global _current_slug
    if lesson_slug:
        _current_slug = lesson_slug
    base = Path(os.environ.get("MINITL_OUTPUT") or "minitl_output")
    path = (base / (lesson_slug or current_lesson())).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value):
    """NumPy scalars and arrays become plain Python values that JSON can hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _record(kind: str, **fields) -> None:
    path = os.environ.get("MINITL_REPORT")
    if not path:
        return
    entry = {"kind": kind, "lesson": current_lesson(), "time": time.time(), **fields}
    # One line per call, appended: a lesson that crashes half-way still leaves what it recorded.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def format_cell(value) -> str:
    """A table cell: floats with 4 significant digits, everything else as str()."""
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows, headers, title=None) -> str:
    """The Markdown text of a table (a title line in bold, if given)."""
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(format_cell(h) for h in headers) + " |")
    lines.append("|" + "|".join(" --- " for _ in headers) + "|")
    for row in rows:
        cells = [format_cell(v) for v in row]
        if len(cells) != len(headers):
            raise ValueError(f"table row {list(row)!r} has {len(cells)} cells, "
                             f"but there are {len(headers)} headers")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows, headers, title=None) -> str:
    """Print ``rows`` as a Markdown table and record it; returns the Markdown text."""
    rows = [list(r) for r in rows]
    text = markdown_table(rows, headers, title)
    print(text, flush=True)
    _record("table", title=title, headers=[format_cell(h) for h in headers],
            rows=[[format_cell(v) for v in r] for r in rows])
    return text


def figure(fig, name: str, caption: str = "") -> Path:
    """Save a matplotlib figure as ``<output_dir>/<name>.png``, record it, and close it.

    Saving renders to a file, so no display is needed (on a server, in CI); lessons run
    with the Agg backend unless you choose another.
    """
    import matplotlib.pyplot as plt  # lazy: matplotlib is slow to import

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "figure"
    path = output_dir() / f"{safe}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)  # a lesson makes many figures; keep memory flat
    print(f"[figure] {path}" + (f": {caption}" if caption else ""), flush=True)
    _record("figure", name=safe, path=str(path), caption=caption)
    return path


def note(text: str) -> None:
    """Print a remark and keep it in the tour's report."""
    print(text, flush=True)
    _record("note", text=str(text))


def metric(name: str, value) -> None:
    """Print and record one key number of the lesson (e.g. the final test accuracy)."""
    value = _plain(value)
    print(f"{name} = {format_cell(value)}", flush=True)
    _record("metric", name=name, value=value)


# --------------------------------------------------------------------------- the tour's report


@dataclass
class LessonRun:
    """One lesson as run by ``minitl tour``: its outcome and what it recorded."""

    number: int
    slug: str
    title: str
    returncode: int
    duration: float          # seconds
    log: Path                # the lesson's stdout and stderr
    records: list = field(default_factory=list)
    # "file:line: figure" for each figure its prose quotes that the run did not print
    # (minitl.lesson_runner.unproduced_figures): such a lesson fails too
    unprinted_figures: list = field(default_factory=list)
    cpu_seconds: float | None = None   # user + system CPU time of the lesson's process


    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.unprinted_figures


def read_records(path) -> list:
    """The JSON lines a lesson recorded (none if it recorded nothing)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def _relative(path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def _heading(run: LessonRun) -> str:
    return run.title if run.title.lower().startswith("lesson") else f"Lesson {run.number}: {run.title}"


def cpu_text(run: LessonRun) -> str:
    """", CPU 8.3 s" when the run's CPU time is known, else ""."""
    return "" if run.cpu_seconds is None else f", CPU {run.cpu_seconds:.1f} s"


def outcome(run: LessonRun) -> str:
    """"pass", or why the lesson failed."""
    if run.returncode:
        return f"FAIL (exit {run.returncode})"
    return "FAIL (prose quotes figures the run did not print)" if run.unprinted_figures else "pass"


def _overview_rows(runs: list) -> list:
    """One row per lesson, then the totals: what the tour's time budget is judged by."""
    def seconds(value):
        return "-" if value is None else f"{value:.1f} s"

    rows = [[r.number, _heading(r), outcome(r), seconds(r.duration), seconds(r.cpu_seconds)] for r in runs]
    cpu = [r.cpu_seconds for r in runs]
    rows.append(["", "all lessons", f"{sum(r.ok for r in runs)} of {len(runs)} passed",
                 seconds(sum(r.duration for r in runs)), seconds(None if None in cpu else sum(cpu))])
    return rows


def tour_markdown(out: Path, runs: list, fast: bool) -> str:
    """report.md: an overview table, then per lesson its outcome and records in order."""
    passed = sum(r.ok for r in runs)
    lines = ["# minitl tour", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} · {'fast mode' if fast else 'full data'} · "
             f"{len(runs)} lessons, {passed} passed, {len(runs) - passed} failed", "",
             markdown_table(_overview_rows(runs), ["#", "lesson", "result", "time", "CPU time"]), ""]
    for run in runs:
        lines += [f"## {_heading(run)}", "",
                  f"**{outcome(run)}** in {run.duration:.1f} s · log: `{_relative(run.log, out)}`", ""]
        metrics = []
        for rec in run.records:
            if rec["kind"] == "table":
                lines += [markdown_table(rec["rows"], rec["headers"], rec.get("title")), ""]
            elif rec["kind"] == "figure":
                caption = rec.get("caption") or rec["name"]
                lines += [f"![{caption}]({_relative(rec['path'], out)})", "", f"*{caption}*", ""]
            elif rec["kind"] == "note":
                lines += [rec["text"], ""]
            elif rec["kind"] == "metric":
                metrics.append([rec["name"], rec["value"]])
        if metrics:
            lines += [markdown_table(metrics, ["metric", "value"], "Key numbers"), ""]
        if run.unprinted_figures:
            lines += ["Figures the prose quotes that the run did not print:", ""]
            lines += [f"- `{figure}`" for figure in run.unprinted_figures] + [""]
        if run.returncode:
            lines += ["Last lines of the log:", "", "```text", _tail(run.log), "```", ""]
    return "\n".join(lines)


def tour_html(out: Path, runs: list, fast: bool) -> str:
    """report.html: the same content as report.md, with the figures embedded (one file)."""
    esc = html.escape

    def html_table(rows, headers, title=None):
        head = "".join(f"<th>{esc(format_cell(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(format_cell(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        caption = f"<caption>{esc(title)}</caption>" if title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    passed = sum(r.ok for r in runs)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>minitl tour</title><style>",
             "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .6em}"
             "caption{font-weight:bold;text-align:left}.fail{color:#b00}.pass{color:#070}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;overflow:auto}",
             "</style></head><body><h1>minitl tour</h1>",
             f"<p>{esc(time.strftime('%Y-%m-%d %H:%M'))} · {'fast mode' if fast else 'full data'} · "
             f"{len(runs)} lessons, {passed} passed, {len(runs) - passed} failed</p>",
             html_table(_overview_rows(runs), ["#", "lesson", "result", "time", "CPU time"])]
    for run in runs:
        css = "pass" if run.ok else "fail"
        parts.append(f"<h2>{esc(_heading(run))}</h2><p class='{css}'><b>{esc(outcome(run))}</b> "
                     f"in {run.duration:.1f} s · log: <code>{esc(_relative(run.log, out))}</code></p>")
        metrics = []
        for rec in run.records:
            if rec["kind"] == "table":
                parts.append(html_table(rec["rows"], rec["headers"], rec.get("title")))
            elif rec["kind"] == "figure":
                caption = rec.get("caption") or rec["name"]
                png = Path(rec["path"])
                src = ("data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
                       if png.is_file() else esc(_relative(png, out)))
                parts.append(f"<figure><img src='{src}' alt='{esc(caption)}'>"
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
            elif rec["kind"] == "note":
                parts.append(f"<p>{esc(rec['text'])}</p>")
            elif rec["kind"] == "metric":
                metrics.append([rec["name"], rec["value"]])
        if metrics:
            parts.append(html_table(metrics, ["metric", "value"], "Key numbers"))
        if run.unprinted_figures:
            parts.append("<p>Figures the prose quotes that the run did not print:</p><ul>"
                         + "".join(f"<li><code>{esc(f)}</code></li>" for f in run.unprinted_figures)
                         + "</ul>")
        if run.returncode:
            parts.append(f"<pre>{esc(_tail(run.log))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_tour_report(out, runs: list, fast: bool = False, html: bool = False) -> list:
    """Write report.md (and report.html) into ``out``; return the paths written."""
    out = Path(out)
    written = [out / "report.md"]
    written[0].write_text(tour_markdown(out, runs, fast), encoding="utf-8")
    if html:
        written.append(out / "report.html")
        written[1].write_text(tour_html(out, runs, fast), encoding="utf-8")
    return written


# --------------------------------------------------------------------------- readable figures


def label_points(ax, xy, labels, fontsize=9):
    """Write ``labels[i]`` beside the point ``xy[i]`` of ``ax`` with no two labels overlapping.

    Each label takes the first place, tried nearest first in eight directions and then further
    out, where its box overlaps no label placed before it and no point; a label that had to move
    away from its point gets a thin line back to it. Returns the annotations, in order.
    """
    import numpy as np

    fig = ax.figure
    fig.canvas.draw()  # a renderer, and the axes' final limits, to measure text with
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.asarray(xy, dtype=float))
    dot = 3.0 * fig.dpi / 72  # half the side of a box around each point, in pixels
    taken = [(x - dot, y - dot, x + dot, y + dot) for x, y in points]

    def overlaps(box):
        x0, y0, x1, y1 = box
        return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)

    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    placed = []
    for (x, y), label in zip(xy, labels):
        best = None
        for radius in (4, 10, 18, 28, 40, 55, 75):
            for dx, dy in directions:
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                note = ax.annotate(label, (x, y), xytext=(dx * radius, dy * radius),
                                   textcoords="offset points", fontsize=fontsize, ha=ha, va=va)
                box = note.get_window_extent(renderer)
                box = (box.x0 - 1, box.y0 - 1, box.x1 + 1, box.y1 + 1)
                if not overlaps(box):
                    best = (note, box, radius)
                    break
                note.remove()
            if best:
                break
        if best is None:  # crowded beyond our rings: keep the nearest place
            note = ax.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=fontsize)
            best = (note, note.get_window_extent(renderer).extents, 4)
        note, box, radius = best
        if radius > 10:
            ax.annotate("", (x, y), xytext=note.get_position(), textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color="grey"))
        taken.append(tuple(box))
        placed.append(note)
    return placed


def save_figure(fig, path, dpi=120):
    """Write a matplotlib figure to `path` (its folder made first); a None path saves nothing.
    The experiments and pretraining commands all save their figures through this."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig

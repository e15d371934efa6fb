"""A self-contained HTML page to explore attention: hover a note to see the arcs to the notes it attends to.

The piano roll is inline SVG written here, one ``<rect class="note">`` per note
(with its track, pitch and timing as data attributes and a tooltip), so the page
shows the music even without JavaScript. The strongest arcs of every note, per
layer and head and averaged, travel as JSON in the page; a few lines of inline
JavaScript draw them on hover (click pins a note). Nothing is fetched from a network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import symusic

from reprise.data.tokenizer import score_notes
from reprise.visualization.attention import HEAD_COLOURS, MAX_ARCS, MEAN_COLOUR, MIN_ARC, NoteAttention
from reprise.visualization.pianoroll import BLACK_KEYS, beats_per_bar, note_name, track_colour

BAR_PX = 150  # horizontal pixels per bar
ROW_PX = 9  # vertical pixels per semitone
MARGIN = 44  # room on the left for note names
ARC_ROWS = 8  # semitone rows above the highest note where arcs rise


def write_attention_html(attention: NoteAttention, out: Path, title: str) -> Path:
    """Write the interactive attention page for ``attention`` to ``out``."""
    layers, heads = attention.weights.shape[:2]
    data = {
        "views": _views(attention.weights),
        "heads": [HEAD_COLOURS[h % len(HEAD_COLOURS)] for h in range(heads)],
        "mean": MEAN_COLOUR,
        "notes": [
            {"x": _x(n.start), "y": _y(n.pitch, _top(attention)) + ROW_PX / 2, "label": attention.describe(i)}
            for i, n in enumerate(attention.notes)
        ],
        "order": [int(i) for i in attention.order()],
    }
    page = _PAGE.format(
        title=html.escape(title),
        layer_options=_options(layers, "layer"),
        head_options='<option value="all">every head, by colour</option>' + _options(heads, "head"),
        legend=_legend(attention),
        svg=_svg(attention),
        data=json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _views(weights: np.ndarray) -> dict[str, dict[str, list]]:
    """``views[layer][head][note]`` = the note's strongest ``[target, weight]`` arcs; keys ``mean`` or ``1``..."""
    by_layer = {"mean": weights.mean(0), **{str(i + 1): weights[i] for i in range(weights.shape[0])}}
    return {
        layer: {
            head: [_strongest(row) for row in matrix]
            for head, matrix in {"mean": w.mean(0), **{str(h + 1): w[h] for h in range(w.shape[0])}}.items()
        }
        for layer, w in by_layer.items()
    }


def _strongest(row: np.ndarray) -> list[list[float]]:
    top = np.argsort(row)[::-1][:MAX_ARCS]
    return [[int(j), round(float(row[j]), 3)] for j in top if row[j] >= MIN_ARC]


def _options(count: int, what: str) -> str:
    return f'<option value="mean">mean of {count} {what}s</option>' + "".join(
        f'<option value="{i + 1}">{what} {i + 1}</option>' for i in range(count)
    )


def _legend(attention: NoteAttention) -> str:
    """Colour keys: the tracks' notes, then the heads' arcs."""
    tracks = [
        (track_colour(i), t.name or f"track {i + 1}") for i, t in enumerate(attention.score.tracks) if len(t.notes)
    ]
    heads = [(HEAD_COLOURS[h % len(HEAD_COLOURS)], f"head {h + 1}") for h in range(attention.weights.shape[1])]
    return "".join(
        f'<span class="key" style="background:{colour}"></span>{html.escape(name)}' for colour, name in tracks + heads
    )


def _top(attention: NoteAttention) -> int:
    """The highest pitch row drawn."""
    return max((n.pitch for n in attention.notes), default=60) + 2


def _x(bars: float) -> float:
    return round(MARGIN + bars * BAR_PX, 2)


def _y(pitch: int, top: int) -> float:
    return (ARC_ROWS + top - pitch) * ROW_PX


def _svg(attention: NoteAttention) -> str:
    """The piano roll as SVG: key stripes, bar lines and numbers, note-name labels and the notes."""
    top = _top(attention)
    low = min((n.pitch for n in attention.notes), default=60) - 2
    n_bars = max([1.0] + [n.end for n in attention.notes])
    width, height = _x(n_bars) + 10, _y(low - 1, top) + 22
    parts = [f'<svg id="roll" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for pitch in range(low, top + 1):
        y = _y(pitch, top)
        if pitch % 12 in BLACK_KEYS:
            parts.append(f'<rect x="{MARGIN}" y="{y}" width="{width - MARGIN}" height="{ROW_PX}" fill="#f0f0f0"/>')
        if pitch % 12 in (0, 7):
            parts.append(
                f'<text x="{MARGIN - 6}" y="{y + ROW_PX - 1}" class="axis" text-anchor="end">{note_name(pitch)}</text>'
            )
    beats = beats_per_bar(attention.score)
    for beat in range(int(n_bars * beats) + 1):
        x, is_bar = _x(beat / beats), beat % beats == 0
        parts.append(
            f'<line x1="{x}" x2="{x}" y1="{_y(top, top)}" y2="{height - 20}" '
            f'stroke="{"#888" if is_bar else "#e2e2e2"}"/>'
        )
        if is_bar and beat / beats < n_bars - 1e-9:
            parts.append(
                f'<text x="{_x(beat / beats + 0.5)}" y="{height - 6}" class="axis" text-anchor="middle">'
                f"{beat // beats + 1:g}</text>"
            )
    parts += [_note_rect(attention, i, note, top) for i, (_, note) in enumerate(score_notes(attention.score))]
    parts.append('<g id="arcs"></g></svg>')
    return "\n".join(parts)


def _note_rect(attention: NoteAttention, i: int, note: symusic.Note, top: int) -> str:
    """Note ``i`` as an SVG rectangle that carries its track, pitch and ticks, with a tooltip."""
    n, track = attention.notes[i], attention.score.tracks[attention.notes[i].track]
    return (
        f'<rect class="note" data-i="{i}" data-track="{n.track}" data-pitch="{n.pitch}" '
        f'data-time="{note.time}" data-duration="{note.duration}" x="{_x(n.start)}" y="{_y(n.pitch, top) + 1}" '
        f'width="{max(2.0, _x(n.end) - _x(n.start) - 1):.2f}" height="{ROW_PX - 2}" '
        f'fill="{track_colour(n.track)}"><title>{html.escape(attention.describe(i))} '
        f"({html.escape(track.name or '')})</title></rect>"
    )


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; }}
#controls {{ margin: 8px 0; }} #controls label {{ margin-right: 14px; }}
#scroll {{ overflow-x: auto; border: 1px solid #ddd; }}
.axis {{ font: 10px sans-serif; fill: #555; }}
.note {{ stroke: #333; stroke-width: 0.5; cursor: pointer; }}
.note.dim {{ opacity: 0.35; }} .note.query {{ stroke: #000; stroke-width: 2.5; opacity: 1; }}
.note.target {{ stroke-width: 1.5; opacity: 1; }}
#info {{ min-height: 3em; margin-top: 8px; }}
#legend {{ margin: 0 0 8px -12px; }}
.key {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: -1px; }}
</style></head><body>
<h2>{title}</h2>
<p>Hover a note to see which earlier notes it attends to; click to pin it (or open the page with
<code>#note=N</code> for the N-th note read, as <code>--note N</code>). An arc's thickness is the share of
the note's attention (from its first token) that goes to the tokens of the note it reaches.</p>
<div id="controls"><label>Layer <select id="layer">{layer_options}</select></label>
<label>Head <select id="head">{head_options}</select></label></div>
<div id="legend">{legend}</div>
<div id="scroll">
{svg}
</div>
<div id="info">No note chosen.</div>
<script type="application/json" id="data">{data}</script>
<script>
const data = JSON.parse(document.getElementById("data").textContent);
const arcs = document.getElementById("arcs"), info = document.getElementById("info");
const notes = Array.from(document.querySelectorAll(".note"));
let pinned = null;
function arc(from, to, colour, weight) {{
  const a = data.notes[to], b = data.notes[from];
  const lift = 10 + Math.min(1, (b.x - a.x) / 300) * 55;
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", `M${{a.x}},${{a.y}} Q${{(a.x + b.x) / 2}},${{Math.min(a.y, b.y) - lift}} ${{b.x}},${{b.y}}`);
  p.setAttribute("fill", "none"); p.setAttribute("stroke", colour);
  p.setAttribute("stroke-width", 0.8 + 9 * weight); p.setAttribute("stroke-opacity", Math.min(1, 0.35 + weight));
  p.setAttribute("stroke-linecap", "round");
  arcs.appendChild(p);
  notes[to].classList.add("target");
}}
function show(i) {{
  clear();
  const layer = document.getElementById("layer").value, head = document.getElementById("head").value;
  const heads = head === "all" ? data.heads.map((c, h) => [String(h + 1), c]) : [[head, head === "mean" ? data.mean : data.heads[head - 1]]];
  const found = [];
  for (const [h, colour] of heads) {{
    for (const [j, w] of data.views[layer][h][i]) {{ arc(i, j, colour, w); found.push([w, j, colour]); }}
  }}
  const lines = found.sort((a, b) => b[0] - a[0]).slice(0, 10).map(([w, j, colour]) =>
    `<span style="color:${{colour}}">${{(100 * w).toFixed(1)}}%</span> ${{data.notes[j].label}}`);
  notes.forEach(n => n.classList.add("dim"));
  notes[i].classList.add("query");
  const number = data.order.includes(i) ? ` (note ${{data.order.indexOf(i)}})` : "";
  info.innerHTML = `<b>${{data.notes[i].label}}${{number}}</b> attends to: ` + (lines.join("; ") || "no earlier note above 2%");
}}
function clear() {{
  arcs.replaceChildren();
  notes.forEach(n => n.classList.remove("dim", "query", "target"));
  info.textContent = "No note chosen.";
}}
notes.forEach((n, i) => {{
  n.addEventListener("mouseenter", () => {{ if (pinned === null) show(i); }});
  n.addEventListener("mouseleave", () => {{ if (pinned === null) clear(); }});
  n.addEventListener("click", () => {{ pinned = pinned === i ? null : i; pinned === null ? clear() : show(i); }});
}});
document.querySelectorAll("select").forEach(s => s.addEventListener("change", () => {{ if (pinned !== null) show(pinned); }}));
const linked = location.hash.match(/note=(-?\d+)/);  // page.html#note=N pins note N, as in --note N
if (linked && data.order.length) {{ pinned = data.order.at(Number(linked[1]) % data.order.length); show(pinned); }}
</script></body></html>
"""

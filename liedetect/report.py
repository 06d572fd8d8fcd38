"""A self-contained HTML report of scored transcripts (inline CSS, JS and images; no external URL) and
the two plots that go with it: score histograms by group and the ROC curve."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from liedetect.artifacts import write_file_atomic

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f4f4f4}tr.flagged td.score{color:#b00;font-weight:bold}
.plots img{max-width:48%;margin-right:1%}
.transcript{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:1em 0}
.msg{margin:.5em 0;padding:.4em .6em;border-radius:4px;background:#fafafa;white-space:pre-wrap;line-height:1.6}
.msg .role{font-weight:bold;font-size:.8em;text-transform:uppercase;color:#666;display:block;white-space:normal}
.msg.unscored{color:#777}.tok{border-radius:2px}
.legend span{display:inline-block;padding:0 .5em}.meta{color:#666;font-size:.85em}
.problems li{font-family:monospace;font-size:.85em}#filter{padding:.3em;width:20em}
.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:.4em .8em}.snippet{color:#444;max-width:28em}
details.transcript>summary{cursor:pointer}details.transcript[open]>summary{margin-bottom:.4em}
"""

JS = """
function filterRows(){
  var q=document.getElementById('filter').value.toLowerCase();
  var only=document.getElementById('onlyflagged').checked;
  document.querySelectorAll('#list tbody tr').forEach(function(tr){
    var ok=tr.textContent.toLowerCase().indexOf(q)>=0 && (!only || tr.classList.contains('flagged'));
    tr.style.display=ok?'':'none';
  });
}
function openHash(){var t=document.getElementById(location.hash.slice(1));if(t&&t.tagName==='DETAILS')t.open=true;}
window.addEventListener('hashchange',openHash);
document.addEventListener('DOMContentLoaded',function(){
  openHash();
  var views=document.querySelectorAll('.transcript').length, toks=document.querySelectorAll('.tok'), coloured=0;
  toks.forEach(function(t){var m=getComputedStyle(t).backgroundColor.match(/[\d.]+/g);
    if(m && (m.length<4 || parseFloat(m[3])>0)) coloured++;});
  var s=document.getElementById('status');
  s.textContent='rendered '+views+' transcripts, '+coloured+' of '+toks.length+' tokens coloured';
  s.dataset.views=views; s.dataset.coloured=coloured; s.dataset.tokens=toks.length;
});
"""


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def histogram_png(rows: Sequence[Dict[str, Any]], threshold: Optional[float] = None) -> bytes:
    """PNG of message-score histograms, one per group, with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    groups: Dict[str, List[float]] = {}
    for r in rows:
        groups.setdefault(str(r.get("group")), []).append(float(r["score"]))
    allv = np.concatenate([np.asarray(v) for v in groups.values()]) if groups else np.zeros(1)
    bins = np.linspace(float(allv.min()), float(allv.max()) + 1e-9, 40)
    for name, vals in sorted(groups.items()):  # outlines, not filled bars: no group hides another
        ax.hist(vals, bins=bins, histtype="step", linewidth=1.6, label=f"{name} (n={len(vals)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("message score: -(probe logit), mean over tokens (higher = more suspicious)")
    ax.set_ylabel("messages")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    data = _png(fig)
    plt.close(fig)
    return data


def roc_png(rows: Sequence[Dict[str, Any]]) -> Optional[bytes]:
    """PNG of the ROC curve of labelled messages (deceptive = positive); None without both classes."""
    from probes.metrics import auroc, roc_curve

    lab = [r for r in rows if r.get("label") in (0, 1)]
    y = np.array([1 - r["label"] for r in lab])
    if len(set(y.tolist())) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.array([r["score"] for r in lab])
    fpr, tpr = roc_curve(y, s)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot(fpr, tpr, label=f"AUROC {auroc(y, s):.3f}")
    ax.plot([0, 1], [0, 1], color="#aaa", linestyle=":")
    ax.set_xlabel("false-positive rate (honest flagged)")
    ax.set_ylabel("recall (deceptive flagged)")
    ax.legend(loc="lower right", fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def save_plots(rows: Sequence[Dict[str, Any]], threshold: Optional[float], prefix: Union[str, Path]) -> List[Path]:
    """Write <prefix>_hist.png and (with labels) <prefix>_roc.png; return the paths written."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    hist = prefix.with_name(prefix.name + "_hist.png")
    paths.append(write_file_atomic(hist, histogram_png(rows, threshold)))
    roc = roc_png(rows)
    if roc is not None:
        paths.append(write_file_atomic(prefix.with_name(prefix.name + "_roc.png"), roc))
    return paths


def _colour(score: float, centre: float, scale: float) -> str:
    """Red above the centre (suspicious), blue below; opacity grows with distance."""
    z = max(-1.0, min(1.0, (score - centre) / scale)) if scale > 0 else 0.0
    rgb = "220,40,40" if z > 0 else "40,90,220"
    return f"rgba({rgb},{abs(z) * 0.75:.3f})"


def _img(data: Optional[bytes], alt: str) -> str:
    if data is None:
        return ""
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(rows: List[Dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


UNITS = ("Units: a token's score is minus the probe's logit at that token (the probe's logit is &gt; 0 where it reads "
         "<i>true</i>), so higher = more suspicious and 0 = the probe undecided. A message's score is the {agg} of its "
         "token scores; a transcript's is its most suspicious message's. A message is flagged when its score is above "
         "the message threshold; token colours are centred on the <i>token</i> threshold ({tsrc}), so a red token is "
         "one that would be flagged on its own.")


def token_centre(summary: Dict[str, Any]) -> Tuple[Optional[float], str]:
    """The token threshold (calibrated on control tokens) when recorded, else the message threshold, and where it came from."""
    calib = summary.get("calibration") or {}
    settings = summary.get("settings") or {}
    tok = calib.get("token_threshold", settings.get("token_threshold"))
    if tok is not None:
        return float(tok), f"{calib.get('fpr', 0):.1%} FPR on control tokens"
    if calib.get("threshold") is not None:
        return float(calib["threshold"]), "no token threshold recorded: the message threshold"
    return None, "no threshold: 0"


def _pct(v: Any, n: Any) -> str:
    return f"{v:.1%} ({round(v * n)} of {n})" if isinstance(v, float) and isinstance(n, int) else _fmt(v)


def _snippet(rec: Dict[str, Any], width: int = 80) -> str:
    scored = [m for m in rec["messages"] if m.get("scored")]
    if not scored:
        return ""
    worst = max(scored, key=lambda m: m.get(rec.get("aggregate") or "mean", 0.0))
    text = " ".join("".join(worst.get("tokens") or []).split())
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def render_html(records: Sequence[Dict[str, Any]], summary: Optional[Dict[str, Any]] = None, title: str = "liedetect scores",
                max_views: int = 2000) -> str:
    """The report as one HTML string: summary, plots, a ranked list, and a coloured view of each transcript."""
    from liedetect.scoring import label_name, message_rows

    summary = summary or {}
    calib = summary.get("calibration") or {}
    threshold = calib.get("threshold")
    aggregate = (records[0].get("aggregate") if records else None) or "mean"
    rows = message_rows(records, aggregate)
    ranked = sorted(records, key=lambda r: (-r["score"], str(r["id"])))
    all_tokens = np.array([s for r in records for m in r["messages"] if m.get("scored") for s in m["scores"]] or [0.0])
    tok_centre, tok_source = token_centre(summary)
    centre = tok_centre if tok_centre is not None else 0.0
    scale = float(np.quantile(np.abs(all_tokens - centre), 0.98)) or 1.0

    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style><script>{JS}</script></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<p id='status' class='meta'>(static view: scripts did not run)</p>"]
    settings = summary.get("settings") or {}
    if settings:
        parts.append("<p class='meta'>" + html.escape(", ".join(f"{k}: {v}" for k, v in settings.items())) + "</p>")
    n_control, fpr = calib.get("n_control"), calib.get("fpr")
    if isinstance(n_control, int) and fpr and n_control < 1.0 / fpr:
        parts.append(f"<p class='warn' id='control-warning'>The threshold comes from {n_control} control messages, fewer "
                     f"than 1/FPR = {1 / fpr:.0f}: its {fpr:.1%} false-positive rate is not measured by them; use more "
                     f"honest control chats.</p>")
    if str(calib.get("source", "")).endswith("(in-sample)"):
        parts.append("<p class='warn'>The threshold was set on the honest messages of this very file (no control set): "
                     "the false-positive rate below is in-sample.</p>")
    metrics = summary.get("metrics") or {}
    head = [{"transcripts": len(records), "scored messages": len(rows), "message score": f"{aggregate} of token scores",
             "message threshold": threshold if threshold is not None else "none",
             "token threshold": tok_centre if tok_centre is not None else "none",
             "threshold from": calib.get("source", "-"), "control messages": calib.get("n_control", "-"),
             "target FPR": _pct(fpr, None) if fpr is None else f"{fpr:.1%}"}]
    parts.append("<h2>Summary</h2>" + _table(head))
    parts.append("<p class='meta' id='units'>" + UNITS.format(agg=html.escape(aggregate), tsrc=html.escape(tok_source)) + "</p>")
    if metrics.get("auroc") is not None or metrics.get("recall") is not None:
        parts.append(_table([{"AUROC": metrics.get("auroc"), "recall at threshold": metrics.get("recall"),
                              "FPR at threshold": metrics.get("fpr"), **(metrics.get("confusion") or {})}]))
    if metrics.get("by_group"):
        parts.append(_table([{"group": k, "messages": v.get("n"), "mean score": v.get("mean"),
                              **({"flagged": _pct(v["flagged"], v.get("n"))} if "flagged" in v else {})}
                             for k, v in metrics["by_group"].items()]))
    parts.append("<div class='plots'>" + _img(histogram_png(rows, threshold) if rows else None, "score histogram")
                 + _img(roc_png(rows), "ROC curve") + "</div>")
    problems = summary.get("problems") or []
    if problems:
        items = "".join(f"<li>line {p['line']}: {html.escape(p['reason'])}</li>" for p in problems[:500])
        parts.append(f"<h2>Skipped lines ({len(problems)})</h2><ul class='problems'>{items}</ul>")

    parts.append("<h2>Transcripts by suspicion</h2><p><input id='filter' placeholder='filter by id, label, group or text' "
                 "oninput='filterRows()'> <label><input type='checkbox' id='onlyflagged' onchange='filterRows()'> "
                 "flagged only</label></p>")
    parts.append(f"<p class='legend'>token colour: <span style='background:{_colour(centre + scale, centre, scale)}'>"
                 f"suspicious (score {centre + scale:.2f})</span><span>token threshold {centre:.2f}</span>"
                 f"<span style='background:{_colour(centre - scale, centre, scale)}'>honest-looking "
                 f"(score {centre - scale:.2f})</span></p>")
    body = []
    for k, rec in enumerate(ranked):
        flagged = threshold is not None and rec["score"] > threshold
        link = f"<a href='#t-{k}'>{html.escape(str(rec['id']))}</a>" if k < max_views else html.escape(str(rec["id"]))
        label = "-" if rec.get("label") is None else label_name(rec["label"])
        body.append(f"<tr class='{'flagged' if flagged else ''}'><td>{k + 1}</td><td>{link}</td>"
                    f"<td>{html.escape(str(label))}</td><td>{html.escape(str(rec.get('group')))}</td>"
                    f"<td class='score'>{rec['score']:.4f}</td><td>{'yes' if flagged else 'no'}</td>"
                    f"<td class='snippet'>{html.escape(_snippet(rec))}</td><td>{len(rec['messages'])}</td>"
                    f"<td>{rec['n_tokens']}</td></tr>")
    parts.append("<table id='list'><thead><tr><th>rank</th><th>id</th><th>label</th><th>group</th><th>score</th>"
                 "<th>flagged</th><th>most suspicious message</th><th>messages</th><th>scored tokens</th></tr></thead>"
                 "<tbody>" + "".join(body) + "</tbody></table>")
    if len(ranked) > max_views:
        parts.append(f"<p class='meta'>Views are shown for the {max_views} most suspicious transcripts only.</p>")

    parts.append("<h2>Transcripts</h2><p class='meta'>Click a transcript to open it (a link in the list opens it too).</p>")
    for k, rec in enumerate(ranked[:max_views]):
        parts.append(_view(k, rec, centre, scale, threshold))
    parts.append("</body></html>")
    return "\n".join(parts)


def _view(k: int, rec: Dict[str, Any], centre: float, scale: float, threshold: Optional[float]) -> str:
    out = [f"<details class='transcript' id='t-{k}' data-id='{html.escape(str(rec['id']), quote=True)}'>",
           f"<summary><b>#{k + 1} {html.escape(str(rec['id']))}</b> <span class='meta'>group {html.escape(str(rec.get('group')))}, "
           f"score {rec['score']:.4f} ({html.escape(str(rec.get('aggregate')))} of the most suspicious message)"
           f"{', flagged' if threshold is not None and rec['score'] > threshold else ''}, "
           f"<a href='#list'>back to list</a></span></summary>"]
    for m in rec["messages"]:
        role = html.escape(str(m["role"]))
        if not m.get("scored"):
            out.append(f"<div class='msg unscored'><span class='role'>{role}</span>{html.escape(m['content'])}</div>")
            continue
        toks = "".join(f"<span class='tok' style='background:{_colour(s, centre, scale)}' title='{s:.3f}'>"
                       f"{html.escape(t)}</span>" for t, s in zip(m["tokens"], m["scores"]))
        stats = f"mean {m['mean']:.3f}, max {m['max']:.3f}, last {m['last']:.3f}, {m['n_tokens']} tokens"
        out.append(f"<div class='msg scored'><span class='role'>{role} <span class='meta'>{stats}</span></span>{toks}</div>")
    out.append("</details>")
    return "".join(out)


def write_report(records: Sequence[Dict[str, Any]], path: Union[str, Path], summary: Optional[Dict[str, Any]] = None,
                 title: str = "liedetect scores", max_views: int = 2000) -> Path:
    """Write the self-contained HTML report to `path`."""
    return write_file_atomic(Path(path), render_html(records, summary, title, max_views))


def report_files(scores: Union[str, Path], out: Union[str, Path]) -> Tuple[List[Path], List[Path]]:
    """(inputs, outputs) of `rebuild_report`: the scores and the summary and control scores beside them; the HTML
    and its two plots."""
    from liedetect.scoring.store import score_outputs

    side = score_outputs(scores)
    out = Path(out)
    prefix = out.with_suffix("")
    return ([Path(scores), side["summary"], side["control"], side["meta"]],
            [out, prefix.with_name(prefix.name + "_hist.png"), prefix.with_name(prefix.name + "_roc.png")])


def preflight_report(scores: Union[str, Path], out: Union[str, Path]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Everything `report` checks before it writes: the output paths (none may be an input, the HTML not a folder),
    the records and the summary beside them; returns (records, summary)."""
    from liedetect.errors import OutputPathError
    from liedetect.paths import check_outputs

    out = Path(out)
    if not out.name or out.is_dir():
        raise OutputPathError(f"--out {out} is a folder; pass a file path such as report.html.")
    inputs, outputs = report_files(scores, out)
    check_outputs(outputs, [p for p in inputs if p.exists()])
    return _read(Path(scores))


def _read(scores: Path) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    import json

    from liedetect.errors import DataError
    from liedetect.paths import read_text
    from liedetect.scoring import read_scores
    from liedetect.schemas import check_summary

    if not scores.exists():
        raise DataError(f"No scores file at {scores}; write one with `liedetect score TRANSCRIPTS --out {scores}`.")
    records = read_scores(scores)
    if not records:
        raise DataError(f"{scores} holds no complete scored transcript.")
    side = scores.with_name(scores.name + ".summary.json")
    summary: Dict[str, Any] = {}
    if side.exists():
        try:
            summary = json.loads(read_text(side, "score summary"))
        except ValueError as exc:
            raise DataError(f"{side} is not valid JSON ({exc}); delete it or score again.") from None
        check_summary(summary, side)
    return records, summary


def rebuild_report(scores: Union[str, Path], out: Union[str, Path],
                   title: Optional[str] = None) -> Tuple[Path, List[Path]]:
    """The HTML report and plots of a scores JSONL, without rescoring: the summary and control scores written
    next to it (SCORES.summary.json, SCORES.control.jsonl) supply the thresholds when present."""
    from liedetect.scoring import message_rows, read_scores
    from probes.metrics import threshold_at_fpr

    records, summary = preflight_report(scores, out)
    scores = Path(scores)
    calib = summary.get("calibration") or {}
    control = scores.with_suffix(".control.jsonl")
    if calib and "token_threshold" not in calib and not (summary.get("settings") or {}).get("token_threshold") \
            and control.exists():
        tokens = [s for r in read_scores(control) for m in r["messages"] if m.get("scored") for s in m["scores"]]
        if tokens:
            calib["token_threshold"] = float(threshold_at_fpr(tokens, calib.get("fpr", 0.01)))
    path = write_report(records, out, summary, title=title or f"liedetect: {scores.name}")
    rows = message_rows(records, records[0].get("aggregate") or "mean")
    plots = save_plots(rows, calib.get("threshold"), Path(out).with_suffix(""))
    return path, plots

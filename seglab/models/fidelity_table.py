"""``seglab models --fidelity``: each architecture against its reference, from the registry.

For every registered architecture the table shows the reference it follows (its
:class:`~seglab.models.registry.Fidelity`), seglab's parameter count at the reference's
settings (built on the ``meta`` device, so counted, not copied), the reference's count and the
difference, any published split (DenseASPP's trunk and head), and every deviation with the
option about it.
"""

from __future__ import annotations

from typing import Any

import torch

from seglab.models.registry import create_model, fidelity, list_models


def _settings_text(settings: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def fidelity_row(name: str) -> dict[str, Any]:
    """One architecture: reference, counts at the reference's settings, parts, deviations.

    Raises:
        LookupError: The architecture has no registered :class:`Fidelity`.
    """
    fid = fidelity(name)
    if fid is None:
        raise LookupError(
            f"Architecture {name!r} has no Fidelity: register it beside its builder with "
            "@register(name, fidelity=Fidelity(reference=..., deviations=(...)))."
        )
    kwargs = dict(fid.settings)
    num_classes = int(kwargs.pop("num_classes", 2))
    with torch.device("meta"):
        model = create_model(name, num_classes, **kwargs)
    named = dict(model.named_parameters())
    params = sum(p.numel() for p in named.values())
    parts = {}
    for part, (prefixes, ref) in fid.parts.items():
        count = sum(p.numel() for n, p in named.items() if n.startswith(tuple(prefixes)))
        parts[part] = {"params": count, "reference_params": ref}
    return {
        "name": name,
        "reference": fid.reference,
        "settings": {"num_classes": num_classes, **kwargs},
        "params": params,
        "reference_params": fid.params,
        "params_source": fid.params_source,
        "parts": parts,
        "deviations": [{"what": d.what, "option": d.option, "why": d.why} for d in fid.deviations],
    }


def fidelity_rows(names: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """:func:`fidelity_row` for the given architectures (all registered ones by default)."""
    return [fidelity_row(n) for n in (names or list_models())]


def _cell(text: object) -> str:
    """A markdown table cell: ``|`` escaped (it would split the cell, even inside backticks)."""
    return str(text).replace("|", "\\|")


def _diff(ours: int, ref: int | None) -> str:
    if ref is None:
        return "-"
    delta = ours - ref
    return "equal" if delta == 0 else f"{delta:+,} ({100 * delta / ref:+.2f} %)"


def fidelity_markdown(rows: list[dict[str, Any]]) -> str:
    """The two tables: counts against the references, then every deviation with its option."""
    lines = [
        "| Model | Reference | Settings | seglab params | Reference params | Difference |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        ref = r["reference_params"]
        lines.append(
            f"| `{r['name']}` | {_cell(r['reference'])} | {_cell(_settings_text(r['settings']))} | "
            f"{r['params']:,} | {'-' if ref is None else f'{ref:,}'} | "
            f"{_diff(r['params'], ref)} |"
        )
        for part, p in r["parts"].items():
            lines.append(
                f"| `{r['name']}` {part} | | | {p['params']:,} | {p['reference_params']:,} | "
                f"{_diff(p['params'], p['reference_params'])} |"
            )
    sources = [f"`{r['name']}`: {r['params_source']}" for r in rows if r["params_source"]]
    lines += ["", "Reference counts: " + "; ".join(sources) + "."] if sources else []
    lines += ["", "| Model | Deviation from the reference | Option | Why |", "|---|---|---|---|"]
    for r in rows:
        for d in r["deviations"]:
            what, option, why = (_cell(d[k]) for k in ("what", "option", "why"))
            lines.append(f"| `{r['name']}` | {what} | `{option}` | {why} |")
    return "\n".join(lines) + "\n"


#: The README block the table lives in, between these two lines.
README_START = "<!-- fidelity table: seglab models --fidelity --update-readme README.md -->\n"
README_END = "<!-- end fidelity -->\n"


def update_readme(path: str, table: str) -> None:
    """Replaces the table between :data:`README_START` and :data:`README_END` in ``path``.

    Raises:
        ValueError: The file has no such block.
    """
    from pathlib import Path

    text = Path(path).read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path} has no fidelity block: add the lines {README_START!r} and "
                         f"{README_END!r} where the table goes.")  # fmt: skip
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    Path(path).write_text(head + README_START + table + README_END + tail)

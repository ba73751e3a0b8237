

def write_block(path, tag: str, text: str) -> None:
    """Put ``text`` between ``<!-- tag:start -->`` and ``<!-- tag:end -->`` in the file at
    ``path`` (replacing what was there, or appending the block)."""
    import re
    from pathlib import Path

    path = Path(path)
    doc = path.read_text() if path.exists() else ""
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc and end in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, doc, flags=re.S)
    else:
        doc = doc + ("\n" if doc else "") + block + "\n"
    path.write_text(doc)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(rows: list, keys: list, fmt=None) -> str:
    """A markdown table of ``rows`` (dicts) over the columns ``keys``; ``fmt`` formats one cell
    (default: floats to 3 significant digits, NaN and None blank)."""
    import math

    def plain(v) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.3g}"
        return "" if v is None else str(v)

    fmt = fmt or plain
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(out + ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows])

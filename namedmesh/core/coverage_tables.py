"""Tables of mtf's public functions and what stands for each in namedmesh.

Rows are ``(mtf_name, namedmesh_name_or_None, note)``; ``core/mtf_ops_table.py`` and
``layers/mtf_layers_table.py`` hold the rows, the docs show the tables these functions render,
and the tests check the rows against mtf's source.
"""


def provided(rows):
    """The rows whose namedmesh name is given (the tests check that each exists)."""
    return [row for row in rows if row[1] is not None]


def coverage(rows) -> str:
    """``"138 of 152 (91%)"``: how many rows are provided."""
    n = len(provided(rows))
    return "%d of %d (%.0f%%)" % (n, len(rows), 100.0 * n / len(rows))


def markdown_rows(header: str, rows, quote_ours: bool = True):
    """The lines of one markdown table: mtf's name, namedmesh's name (or "not provided"), note."""
    lines = ["| %s | namedmesh | notes |" % header, "| --- | --- | --- |"]
    for mtf_name, ours, note in rows:
        shown = ("`%s`" % ours if quote_ours else ours) if ours else "not provided"
        lines.append("| `%s` | %s | %s |" % (mtf_name, shown, note))
    return lines

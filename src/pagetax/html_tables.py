"""The report page's HTML tables: each in its own horizontal scroll box, so a
wide table scrolls on a phone instead of widening the page."""
import html


def cells(row, left, tag="td"):
    return "".join(f'<{tag} class="{"l" if i < left else ""}">{html.escape(str(c))}</{tag}>'
                   for i, c in enumerate(row))


def table(headers, rows, left=1):
    """A table in its own horizontal scroll box: wide tables scroll on a
    phone instead of widening the page."""
    body = "".join(f"<tr>{cells(r, left)}</tr>" for r in rows)
    return (f'<div class="scroll"><table><thead><tr>{cells(headers, left, "th")}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def grouped_table(headers, groups, shared):
    """One tbody per group, its first `shared` cells spanning its rows, as
    the terminal table prints them once per op, pattern and size."""
    out = [f'<div class="scroll"><table><thead><tr>{cells(headers, shared + 1, "th")}</tr>'
           "</thead>"]
    for key, rows in groups:
        out.append('<tbody class="cell">')
        for i, r in enumerate(rows):
            span = "".join(f'<td class="l" rowspan="{len(rows)}">{html.escape(str(k))}</td>'
                           for k in key) if i == 0 else ""
            out.append(f"<tr>{span}{cells(r, 1)}</tr>")
        out.append("</tbody>")
    out.append("</table></div>")
    return "".join(out)

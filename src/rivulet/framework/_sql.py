"""One SQL parameter style for both databases: ``?`` placeholders.

Service code runs unchanged on SQLite and PostgreSQL, so the framework accepts SQLite's
``?`` placeholders everywhere and rewrites them for psycopg (``%s``, with literal ``%``
doubled). The scanner skips string literals, quoted identifiers, comments and
PostgreSQL dollar-quoted strings, so a ``?`` inside them is left alone.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["count_placeholders", "qmark_to_pyformat"]

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def _scan(sql: str) -> tuple[str, int]:
    out: list[str] = []
    count = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = _closing_quote(sql, i)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "$" and (match := _DOLLAR_TAG.match(sql, i)) and not _in_identifier(sql, i):
            tag = match.group(0)
            end = sql.find(tag, match.end())
            end = n if end < 0 else end + len(tag)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "?":
            out.append("%s")
            count += 1
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), count


def _closing_quote(sql: str, start: int) -> int:
    quote = sql[start]
    i = start + 1
    while True:
        end = sql.find(quote, i)
        if end < 0:
            return len(sql)
        if end + 1 < len(sql) and sql[end + 1] == quote:  # '' or "" is an escaped quote
            i = end + 2
            continue
        return end + 1


def _in_identifier(sql: str, i: int) -> bool:
    # "$1" style tags follow identifier characters only in names like a$b, never as quotes.
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")


@lru_cache(maxsize=1024)
def qmark_to_pyformat(sql: str) -> str:
    """Rewrite ``?`` placeholders for psycopg.

    >>> qmark_to_pyformat("SELECT '?', x FROM t WHERE a = ? AND b LIKE 'x%'")
    "SELECT '?', x FROM t WHERE a = %s AND b LIKE 'x%%'"
    """
    return _scan(sql)[0]


def count_placeholders(sql: str) -> int:
    """How many ``?`` placeholders the statement has (outside literals and comments).

    >>> count_placeholders("INSERT INTO t VALUES (?, ?, '?')")
    2
    """
    return _scan(sql)[1]

"""Text from outside on its way to a place that interprets it. Pure.

Series labels and error bodies come from metric endpoints, which a CanaryApp's author may run; what they say
ends up in the CanaryApp's status, in Events, in terminals (`kubectl canaryapp status`) and in Slack. A
terminal obeys escape sequences (move the cursor, clear the screen, retitle the window, hide a link behind
text); Slack obeys `<!channel>` (notify everyone) and `<http://x|y>` (a link disguised as `y`). So:

- `printable` removes control characters and escape sequences, where outside text is stored (check records,
  status messages) or printed;
- `slack_escaped` escapes Slack's control characters where outside text becomes a Slack message;
- `shown_url` is a URL as any message shows it: without what could carry a credential.
"""

from __future__ import annotations

import re
import urllib.parse

# Escape sequences, 7-bit (ESC ...) and 8-bit (C1): CSI (colours, cursor moves, erasing), the string commands
# OSC, DCS, SOS, PM and APC (window titles, hyperlinks, clipboard writes) up to their terminator, and the
# two- and three-character ESC sequences.
_ESCAPE_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 except tab and newline (a carriage return rewrites the line it is on), DEL, C1.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SLACK_CONTROL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def printable(text: str) -> str:
    """`text` without escape sequences and control characters (newlines and tabs stay)."""
    return _CONTROL_CHARACTERS.sub("", _ESCAPE_SEQUENCES.sub("", text))


def slack_escaped(text: str) -> str:
    """`text` as Slack shows it literally: `&`, `<` and `>` escaped, so no mention or link is formed."""
    return text.translate(_SLACK_CONTROL)


def shown_url(url: str) -> str:
    """A URL as messages show it: the user name and password masked, without the query or fragment (either
    may carry a token)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return "(a URL that cannot be parsed)"
    _, at, host = parts.netloc.rpartition("@")
    masked = f"***@{host}" if at else host
    return printable(urllib.parse.urlunsplit((parts.scheme, masked, parts.path, "", "")))

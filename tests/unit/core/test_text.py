"""Text from outside (text.py) reaches terminals, the status and Slack inert: no escape sequence,
control character, mention or link survives, and no URL shows a credential."""

from __future__ import annotations

import pytest

from reconciler.core.text import printable, shown_url, slack_escaped


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("5xx on web-canary", "5xx on web-canary", id="plain text unchanged"),
        pytest.param("line one\n\tline two", "line one\n\tline two", id="newline and tab stay"),
        pytest.param("\x1b[31mred\x1b[0m", "red", id="colour"),
        pytest.param("ok\x1b[2J\x1b[Hfake status", "okfake status", id="clear screen and cursor home"),
        pytest.param("\x1b[1A\x1b[2Kpromoted", "promoted", id="overwrite the line above"),
        pytest.param("\x1b]0;owned\x07title", "title", id="window title, BEL"),
        pytest.param("\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "click", id="hidden hyperlink, ST"),
        pytest.param("\x1bP+q\x1b\\x", "x", id="device control string"),
        pytest.param("\x9b31mC1 CSI", "C1 CSI", id="8-bit CSI"),
        pytest.param("a\x1b7b\x1b8c", "abc", id="save and restore the cursor"),
        pytest.param("Failed\rPassed", "FailedPassed", id="carriage return"),
        pytest.param("bell\x07null\x00del\x7fc1\x85", "bellnulldelc1", id="C0, DEL and C1"),
        pytest.param("trailing escape\x1b", "trailing escape", id="a lone ESC"),
        pytest.param("ünïcödé ✓", "ünïcödé ✓", id="printable unicode stays"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        pytest.param("<!channel> deploy broke", "&lt;!channel&gt; deploy broke", id="mention everyone"),
        pytest.param("<!here|here>", "&lt;!here|here&gt;", id="mention here"),
        pytest.param("<@U012AB3CD>", "&lt;@U012AB3CD&gt;", id="mention a user"),
        pytest.param("<http://evil.example|grafana>", "&lt;http://evil.example|grafana&gt;", id="link"),
        pytest.param("a &lt; b & c", "a &amp;lt; b &amp; c", id="ampersand first"),
        pytest.param("rate > 0.5", "rate &gt; 0.5", id="comparison"),
    ],
)
def test_slack_escaped(text: str, escaped: str) -> None:
    assert slack_escaped(text) == escaped


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("http://prom:9090/api", "http://prom:9090/api", id="plain"),
        pytest.param("http://user:s3cret@prom:9090/", "http://***@prom:9090/", id="user and password"),
        pytest.param("https://tok3n@prom/x", "https://***@prom/x", id="token as user"),
        pytest.param("http://prom/q?token=s3cret#frag", "http://prom/q", id="query and fragment"),
        pytest.param("http://[::1]:9090/", "http://[::1]:9090/", id="IPv6 address"),
        pytest.param("http://[::1/", "(a URL that cannot be parsed)", id="unparsable"),
        pytest.param("http://prom/\x1b[2Jx", "http://prom/x", id="escape sequence"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    assert shown_url(url) == shown

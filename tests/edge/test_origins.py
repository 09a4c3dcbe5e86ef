"""Socket.IO origins: the page's own, wherever the stack is reached, and the listed."""

from __future__ import annotations

from edge.origins import AllowedOrigins

allowed = AllowedOrigins(["http://localhost:8080", "https://aifx.example.com/"])


def test_the_pages_own_origin_on_any_port_and_the_listed_ones():
    here = {"HTTP_HOST": "127.0.0.1:43117", "wsgi.url_scheme": "http"}
    assert allowed("http://127.0.0.1:43117", here)
    assert allowed("https://aifx.example.com", here)
    assert allowed("http://localhost:8080", here)
    behind_tls = {
        "HTTP_HOST": "edge:8081",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "trade.example.org",
    }
    assert allowed("https://trade.example.org", behind_tls)


def test_another_site_is_refused_and_a_non_browser_needs_no_origin():
    here = {"HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http"}
    assert not allowed("https://evil.example", here)
    assert not allowed("http://127.0.0.1:8081", here)
    assert not allowed("https://127.0.0.1:8080", here)
    assert allowed(None, here) and allowed("", {})

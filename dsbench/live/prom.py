"""Prometheus /metrics scraping: one exposition in, one parsed `engines.Scrape` out.

What the series mean is each engine adapter's business (live/engines.py).
"""

from __future__ import annotations

import httpx

from .engines import Scrape, parse_metrics

Snapshot = Scrape
parse = parse_metrics


async def scrape(client: httpx.AsyncClient, url: str, headers: dict | None = None) -> Scrape:
    """GET `url` and parse it; raises httpx errors (and ValueError for unparseable text)."""
    r = await client.get(url, headers=headers)
    r.raise_for_status()
    return parse_metrics(r.text)

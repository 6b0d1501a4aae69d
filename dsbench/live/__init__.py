"""Live measurement: OpenAI-compatible streaming client, load generation, Prometheus scraping."""

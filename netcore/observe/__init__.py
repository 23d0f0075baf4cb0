"""What a node tells the world: typed events, log formats, Prometheus metrics.

It reads the components it reports on through their attributes and imports none of them."""

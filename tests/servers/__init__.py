"""Real servers on loopback that tests talk to over HTTP (no mocked clients)."""

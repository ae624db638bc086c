"""A local multi-host lab: real systemd hosts, a real DNS server and Ollama API doubles."""

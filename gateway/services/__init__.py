"""A gateway host's services, one component (module) each: the host's own files (host), the proxy
instances (proxy), the rate-limit store and its sentinels (store), the scrape token (metrics), the
front (front) and the fleet's address (fleet_address). registry.py puts them together."""

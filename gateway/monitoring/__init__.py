"""The monitoring host's services (Prometheus, Alertmanager, the blackbox exporter) and the node
exporter on every managed host: their settings and targets (settings.py), their files and units
(files.py), their logins (auth.py), and Prometheus' API as `fab status` and `fab usage` ask it
(prometheus.py)."""

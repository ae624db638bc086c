"""The lab's monitoring host boots without an earlier session's alert notifications (fast: its
file system faked, nothing booted)."""
from __future__ import annotations

from lab import control, machines, topology


def test_a_monitoring_host_booted_again_has_forgotten_what_its_alertmanager_notified(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "STATE_DIR", tmp_path)
    kept = control.MONITORING_HOST.root / "var/lib/litellm-monitoring/alertmanager"
    kept.mkdir(parents=True)
    for name in ("nflog", "silences"):
        (kept / name).write_text("an earlier session's")
    booted = []
    monkeypatch.setattr(machines, "ensure_host", lambda host, fresh=False: booted.append(host.name))
    monkeypatch.setattr(control, "refresh_dns", lambda: None)
    monkeypatch.setattr(control.alert_sink, "ensure", lambda: None)
    running = {"pid": 4242}
    monkeypatch.setattr(machines, "pid", lambda host: running["pid"])
    control.ensure_monitoring()  # running: left as it is
    assert sorted(p.name for p in kept.iterdir()) == ["nflog", "silences"]
    running["pid"] = None
    control.ensure_monitoring()  # stopped: booted without them
    assert list(kept.iterdir()) == [] and booted == ["mon1", "mon1"]

"""The operator-side team keys file: hashes only, limits checked, changes atomic and deterministic."""
from __future__ import annotations

import json

import pytest

from gateway.settings import SettingsError, load
from gateway.team_keys import KeyStore, TeamKeyError, digest, host_file
from tests.test_settings import seed_data


def test_create_keeps_only_the_hash_and_the_seed_limits(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key = store.create("team-a")
    assert key.startswith("sk-") and len(key) == 67
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and digest(key) in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    entry = store.read()["team-a"]
    assert (entry.rpm, entry.max_parallel_requests, entry.max_tokens, entry.timeout) == (60, 10, 2048, 30)


def test_rotate_and_revoke(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    old = store.create("team-a", rpm=5)
    new = store.rotate("team-a")
    entry = store.read()["team-a"]
    assert entry.sha256 == digest(new) != digest(old) and entry.rpm == 5
    store.revoke("team-a")
    assert store.read() == {}
    with pytest.raises(TeamKeyError, match="no key for team 'team-a'"):
        store.revoke("team-a")


def test_limits_change_and_the_key_stays(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key = store.create("team-a", rpm=5)
    before = store.read()["team-a"]
    after = store.set_limits("team-a", max_tokens=64)
    assert store.read()["team-a"] == after
    assert (after.sha256, after.rpm, after.max_tokens, after.rotated) == (digest(key), 5, 64, before.rotated)
    with pytest.raises(TeamKeyError, match="max_tokens=0 is out of range"):
        store.set_limits("team-a", max_tokens=0)
    with pytest.raises(TeamKeyError, match="no key for team 'team-b'"):
        store.set_limits("team-b", rpm=1)
    assert store.read()["team-a"] == after  # a refused change changes nothing


@pytest.mark.parametrize("team,limits,message", [
    ("Team A", {}, "lower-case"),
    ("team-a", {"rpm": 0}, "rpm=0 is out of range"),
    ("team-a", {"burst": 3}, "unknown limit 'burst'"),
])
def test_bad_team_or_limit_is_refused(tmp_path, team, limits, message):
    with pytest.raises(TeamKeyError, match=message):
        KeyStore(tmp_path / "keys.json").create(team, **limits)


def test_a_team_gets_one_key(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    store.create("team-a")
    with pytest.raises(TeamKeyError, match="rotate it instead"):
        store.create("team-a")


def test_host_file_is_deterministic_and_holds_no_key(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    keys = [store.create(t) for t in ("b-team", "a-team")]
    rendered = host_file(store.read())
    # The same keys read in another order give the same bytes: the deploy compares checksums.
    assert rendered == host_file(dict(reversed(list(store.read().items()))))
    assert list(json.loads(rendered)["keys"]) == sorted(json.loads(rendered)["keys"])
    assert all(key not in rendered for key in keys)
    assert set(json.loads(rendered)["keys"]) == {digest(k) for k in keys}


def test_keys_file_inside_the_repository_is_refused():
    with pytest.raises(SettingsError, match="inside the repository"):
        load(seed_data(litellm_team_keys_file="secrets/team-keys.json"))

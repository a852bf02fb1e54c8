"""certificates.py on real certificates made by trustme: the names a certificate covers (as a
client that checks names would judge), its expiry, and the pair check that install and configure
run before anything changes."""

from __future__ import annotations

import datetime
from pathlib import Path

import trustme

from dk_installer.certificates import chain_is_complete, pair_problem, read_certificate


def write(leaf: trustme.LeafCert, directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def test_names_are_matched_like_a_verifying_client(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, _ = write(ca.issue_cert("*.team.example", "db.example", "10.1.2.3", "::1"), tmp_path)
    facts = read_certificate(cert)
    assert facts is not None
    assert facts.covers("testgen.team.example") and facts.covers("TESTGEN.team.example.")
    assert not facts.covers("a.testgen.team.example"), "a wildcard stands for one label only"
    assert not facts.covers("team.example")
    assert facts.covers("db.example") and not facts.covers("other.example")
    assert facts.covers("10.1.2.3") and not facts.covers("10.1.2.4")
    assert facts.covers("0:0:0:0:0:0:0:1") and facts.covers("::1")
    assert set(facts.names) == {"*.team.example", "db.example", "10.1.2.3", "0:0:0:0:0:0:0:1"}


def test_expiry_is_read_from_the_certificate(tmp_path: Path) -> None:
    end = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=10)
    cert, key = write(trustme.CA().issue_cert("localhost", not_after=end), tmp_path)
    facts = read_certificate(cert)
    assert facts is not None and facts.not_after == end
    assert facts.days_left() == 9  # 10 days less the seconds since it was made
    assert pair_problem(cert, key) is None


def test_the_pair_check_refuses_what_testgen_could_not_serve(tmp_path: Path) -> None:
    ca = trustme.CA()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    cert, key = write(ca.issue_cert("localhost", not_after=past), tmp_path)
    assert "expired on" in (pair_problem(cert, key) or "")
    other = tmp_path / "other"
    other.mkdir()
    fresh, _ = write(ca.issue_cert("localhost"), other)
    assert "not a matching certificate" in (pair_problem(fresh, key) or "")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert read_certificate(garbage) is None and read_certificate(tmp_path / "missing.pem") is None


def test_a_chain_is_complete_only_up_to_a_root_a_client_trusts(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf_only, key = write(ca.issue_cert("localhost"), tmp_path)
    assert not chain_is_complete(leaf_only, key), "a leaf is no trust anchor for clients"
    full = tmp_path / "full.pem"
    full.write_bytes(leaf_only.read_bytes() + ca.cert_pem.bytes())
    assert chain_is_complete(full, key)
    self_signed, own_key = tmp_path / "self.pem", tmp_path / "self-key.pem"
    ca.cert_pem.write_to_path(str(self_signed))
    ca.private_key_pem.write_to_path(str(own_key))
    assert chain_is_complete(self_signed, own_key), "a self-signed certificate is its own root"

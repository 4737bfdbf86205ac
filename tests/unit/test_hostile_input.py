"""UP-3 / issue 15: the hostile-input corpus — each case refused with its exact error, in < 1 s,
with the store unchanged; odd-but-harmless inputs imported with safe common names.

Runs the real use case (`operations.importing.import_certificate`) against a SQLite store.
The cases are generated at test time (tests/fixtures/import/hostile.py).
"""

from __future__ import annotations

import importlib
import time

import pytest

from certpilot.core.errors import BadInputError, CertpilotError
from certpilot.core.models import Level, Origin
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, session_scope

hostile = importlib.import_module("tests.fixtures.import.hostile")
corpus_tests = importlib.import_module("tests.unit.test_import_corpus")
NOW = hostile.pki.NOW
VAULT = KeyVault(LocalMasterKey(bytes(range(32)), source="test"))
BOUND_SECONDS = 1.0
CASES = hostile.hostile_cases()
ACCEPTED = hostile.accepted_cases()


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile-db') / 'certpilot.db'}"
    ensure_schema(url)
    return url


def _import(url, case):
    with session_scope(url) as s:
        return import_certificate(s, cert_pem=case.cert, key_pem=case.key, chain_pem=case.chain,
                                  passphrase=case.passphrase, origin=Origin.UPLOADED, level=Level.DV,
                                  brand="DigiCert", owner=case.extra.get("owner", "ops@example.com"),
                                  now=NOW, vault=VAULT)


@pytest.mark.parametrize("name", sorted(CASES))
def test_up3_hostile_input_refused_fast_store_unchanged(db_url, name):
    """UP-3: a hostile bundle is refused with its exact reason and sentence, in under a second."""
    case, reason, fragment = CASES[name]
    before = corpus_tests.counts(db_url)
    started = time.perf_counter()
    with pytest.raises(CertpilotError) as exc:
        _import(db_url, case)
    elapsed = time.perf_counter() - started
    err = exc.value
    assert isinstance(err, BadInputError) and err.exit_code == 4, repr(err)
    assert err.reason is reason, err.message
    assert fragment in err.message, err.message
    # The message is one safe line: no raw control characters reach a terminal, a log or a header.
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u202e\u200b" for ch in err.message), err.message
    assert elapsed < BOUND_SECONDS, f"{name} took {elapsed:.3f}s"
    assert corpus_tests.counts(db_url) == before


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_up3_odd_input_imported_with_safe_common_name(db_url, name):
    """UP-3/UP-1: a BOM, an IDN CN or markdown in the CN import; the stored CN is a checked name."""
    case, common_name, warning = ACCEPTED[name]
    started = time.perf_counter()
    result = _import(db_url, case)
    assert time.perf_counter() - started < BOUND_SECONDS
    assert result.certificate.common_name == common_name
    codes = {w.code for w in result.warnings}
    assert (warning in codes) if warning else "cn-not-a-san" not in codes, codes


def test_hostile_corpus_size():
    """Issue 15's bar: at least 60 new bad-input cases across the corpus files."""
    import tests.unit.test_hostile_endpoints as endpoints

    assert len(CASES) + len(ACCEPTED) + endpoints.CASE_COUNT >= 60

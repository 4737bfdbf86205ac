"""The configuration file of `certpilot setup --config FILE` (read and validated, nothing written).

Secrets come from the environment or a file, never show in an error, and the master key is
refused: it never goes in a Prefect block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from certpilot.core.errors import BadInputError
from certpilot.setup_config import read_config_file

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "setup.example.toml"
TSIG = "c2VjcmV0LXRzaWctdmFsdWU="


def test_the_example_file_names_every_block_it_needs(monkeypatch):
    """config/setup.example.toml reads: five named blocks, then the configuration naming them."""
    monkeypatch.setenv("CERTPILOT_TSIG_SECRET", TSIG)
    monkeypatch.setenv("CERTPILOT_SMTP_PASSWORD", "smtp-pw")
    plan = read_config_file(EXAMPLE)
    assert [s.ref for s in plan.blocks] == [
        "certpilot-acme-account/letsencrypt", "certpilot-private-ca/default", "certpilot-rfc2136/primary",
        "certpilot-route53/cloud", "certpilot-email-notices/ops"]
    assert plan.config.ref == "certpilot-config/default"
    assert set(plan.references()) <= plan.defined()
    dns = next(s for s in plan.blocks if s.kind == "rfc2136").build()
    assert dns.tsig_secret.get_secret_value() == TSIG and TSIG not in repr(dns)
    mail = next(s for s in plan.blocks if s.kind == "email-notices").build()
    assert mail.server.password.get_secret_value() == "smtp-pw"
    config = plan.config.build()
    assert config.default_issuer == "acme/letsencrypt" and config.dns_providers == ["rfc2136/primary", "route53/cloud"]


def test_a_secret_from_a_file(tmp_path):
    secret = tmp_path / "tsig"
    secret.write_text(TSIG + "\n")
    f = tmp_path / "c.toml"
    f.write_text(f'[certpilot]\ndns_providers = ["rfc2136/p"]\n[rfc2136.p]\nserver = "192.0.2.1"\nzones = ["a.test"]\n'
                 f'tsig_key_name = "k"\ntsig_secret = {{ file = "{secret}" }}\n')
    (spec,) = read_config_file(f).blocks
    assert spec.build().tsig_secret.get_secret_value() == TSIG


@pytest.mark.parametrize("body, says", [
    ('[certpilot]\n[key-vault]\nmaster_key = "AAAA"\n', "never kept in a Prefect block"),
    ('[certpilot]\n[vault.x]\na = 1\n', "unknown table [vault]"),
    ('[certpilot]\ndefault_isuer = "acme/x"\n', "unknown field(s) default_isuer"),
    ('[certpilot]\n[rfc2136.p]\nserver = "192.0.2.1"\nzones = ["a.test"]\ntsig_key_name = "k"\n'
     'tsig_secret = { env = "CERTPILOT_TEST_UNSET" }\n', "CERTPILOT_TEST_UNSET, which is not set"),
    ('[certpilot]\n[rfc2136.p]\nserver = "192.0.2.1"\nzones = "a.test"\ntsig_key_name = "k"\n'
     'tsig_secret = "c2VjcmV0LXRzaWctdmFsdWU="\n', "[rfc2136.p]: zones"),
    ('[acme.x]\ndirectory_url = "https://ca.test/dir"\n', "no [certpilot] table"),
    ('[certpilot\n', "not valid TOML"),
])
def test_an_invalid_file_is_refused_saying_where_without_the_secret(tmp_path, monkeypatch, body, says):
    monkeypatch.delenv("CERTPILOT_TEST_UNSET", raising=False)
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(BadInputError) as err:
        read_config_file(f)
    assert says in str(err.value)
    assert TSIG not in str(err.value) and "AAAA" not in str(err.value)


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        read_config_file(tmp_path / "nope.toml")

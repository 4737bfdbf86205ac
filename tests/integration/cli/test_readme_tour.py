"""The README's tour of the command line is a test: every command of its `sh` block runs, in order,
against a fresh home, with the exit code the README promises, and the README's worked examples
(the dry run's JSON, the refusal, VA-5's certificate counts) are what the CLI prints.

Conventions the README keeps so that its tour can run: `ID` is the certificate the tour imports,
`ORDER_ID` the order the latest `buy` placed, `LATER_ID` the first *not activated* yearly
certificate of the tour's 3-year renewal; `[...]` marks an optional part (run without it); a
comment that says `exit N` is the exit code promised (else 0). The files `shop.pem`, `shop.key`
and `chain.pem` are made for the run: a DigiCert DV certificate 20 days from expiry, so that the
tour's renewal is open today.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

README = Path(__file__).resolve().parents[3] / "README.md"


@dataclass
class Step:
    """One command of the tour: its words (placeholders unresolved) and the exit code promised."""

    line: str
    argv: list[str]
    exit_code: int


def tour_section() -> str:
    text = README.read_text()
    start = text.index("## A tour of the command line")
    return text[start:text.index("\n## ", start + 1)]


def tour_steps() -> list[Step]:
    """The commands of the tour's first `sh` block, continuation lines joined, optional parts out."""
    section = tour_section()
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    steps: list[Step] = []
    for line in block.replace("\\\n", " ").splitlines():
        command, _, comment = line.partition("#")
        promised = re.search(r"\bexit (\d)\b", comment)
        if not command.strip():  # a comment line goes with the command above it
            if promised:
                steps[-1].exit_code = int(promised.group(1))
            continue
        assert command.strip().startswith("certpilot "), line
        argv = shlex.split(re.sub(r"\[[^\]]*\]", "", command))[1:]
        steps.append(Step(line.strip(), argv, int(promised.group(1)) if promised else 0))
    return steps


def _write_bundle(tmp: Path, test_ca, names: list[str], not_before: datetime, not_after: datetime, stem: str):
    from certpilot.demo import issue_leaf

    ca_key, ca_cert = test_ca
    key, cert = issue_leaf(ca_key, ca_cert, names, not_before, not_after)
    (tmp / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (tmp / f"{stem}.key").chmod(0o600)
    (tmp / "chain.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def tour_dir(tmp_path, test_ca, monkeypatch) -> Path:
    """A working directory with the tour's shop.pem, shop.key and chain.pem (20 days left now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    _write_bundle(tmp_path, test_ca, ["shop.example.com"], now - timedelta(days=345), now + timedelta(days=20),
                  "shop")
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Tour:
    """The values the tour's placeholders stand for, learnt from the outputs as it runs."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def resolve(self, argv: list[str]) -> list[str]:
        return [self.values.get(word, word) for word in argv]

    def learn(self, argv: list[str], data: dict) -> None:
        """Take the ids the next commands need from a command's JSON output."""
        if argv[:1] == ["import"]:
            self.values["ID"] = data["id"]
        elif argv[:1] == ["buy"]:
            text = json.dumps(data)
            self.values["ORDER_ID"] = re.search(r"ord-[0-9a-f]+", text).group(0)
        elif argv[:1] == ["renew"] and "--dry-run" not in argv and "certificates" in data:
            planned = {p["index"]: p for p in data["order"]["planned"]}
            later = [c for c in data["certificates"]
                     if c["state"] == "not_activated" and not planned[c["plan_index"]]["reissue"]]
            if later:
                self.values["LATER_ID"] = later[0]["id"]


def check_step(step: Step, argv: list[str], data: dict, tour: Tour) -> None:
    """What the README says each command does, checked on its JSON output."""
    command = " ".join(argv[:2])
    if argv[0] == "import":
        assert data["id"].startswith("crt-") and data["brand"] == "DigiCert" and data["origin"] == "official"
    elif argv[0] == "list" and "--expiring-within" not in argv:
        assert tour.values["ID"] in [c["id"] for c in data["certificates"]]
    elif argv[0] == "show":
        assert data["certificate"]["id"] == tour.values["ID"]
    elif command == "quota remove":
        assert data["entry"]["delta"] == -1 and data["balances"]["quota"]["DigiCert/DV/single"] == 2
    elif argv[0] == "renew" and "--dry-run" in argv:
        assert data["eligible"] is True and data["plan"]["certificates"]
    elif argv[0] == "renew":
        # PL-2: three years buy three quota (two from the balance, one charged as approved) and two
        # managed services, and every certificate of the term is created under the original.
        assert data["order"]["state"] == "paid"
        assert len(data["certificates"]) == len(data["order"]["planned"]) >= 3
        assert {c["parent_id"] for c in data["certificates"]} == {tour.values["ID"]}
        assert data["certificates"][0]["state"] == "pending_application"
    elif argv[0] == "buy":
        assert data["error"]["reason"] == "ShortfallNotApproved"
        assert f"certpilot pay {tour.values['ORDER_ID']}" in data["error"]["instead"]
    elif argv[0] == "pay":
        # VA-5: a year bought today is covered by more than one certificate (200 days, then 100 …).
        assert data["order"]["state"] == "paid"
        assert len(data["certificates"]) == len(data["order"]["planned"]) >= 1
        assert {tuple(c["names"]) for c in data["certificates"]} == {("a.example.com", "b.example.com")}
        assert data["certificates"][0]["state"] == "pending_application"
    elif argv[0] == "orders":
        assert tour.values["ORDER_ID"] in json.dumps(data)
    elif command == "order cancel":
        assert "cancelled" in json.dumps(data)
    elif argv[0] == "cancel":
        assert data["state"] == "cancelled" and data["restored"]


def test_readme_tour_runs_as_written(cp, home, tour_dir):
    """Every command of the README's tour, in order, in a fresh home: the exit code the README
    promises (a comment `exit N`, else 0) and what the README says it does; the reads print for
    people too. Then the renewal shows its marker, as the README says."""
    steps = tour_steps()
    names = {" ".join(s.argv[:2]) for s in steps}
    # The tour covers the command line a newcomer needs, engineer A's order book included.
    for needed in ("import --cert", "renew ID", "buy --name", "pay ORDER_ID", "orders", "order show",
                   "order cancel", "cancel LATER_ID", "quota add", "quota remove", "demo"):
        assert any(n.startswith(needed) for n in names), needed
    tour = Tour()
    for step in steps:
        argv = tour.resolve(step.argv)
        assert not [w for w in argv if w in ("ID", "ORDER_ID", "LATER_ID")], (step.line, tour.values)
        r = cp(*argv, "--json")
        assert r.code == step.exit_code, (step.line, r.out, r.err)
        data = r.json
        tour.learn(argv, data)
        check_step(step, argv, data, tour)
        if argv[0] in ("list", "show", "orders") or argv == ["quota"] or argv[:2] == ["order", "show"]:
            human = cp(*argv)
            assert human.code == 0 and human.out.strip(), step.line
    original = cp("show", tour.values["ID"], "--json").json["certificate"]
    assert original["renewal"].startswith("renewed → ")


# ---------------------------------------------------------------- the worked examples


def _console_blocks() -> list[str]:
    return re.findall(r"```console\n(.*?)```", tour_section(), re.S)


README_ID = "crt-3f9c0a1b2d4e5f60"


@pytest.fixture
def seed_shop(cp, tmp_path, test_ca):
    """The README's example certificate: official DV DigiCert, valid 2024-10-01 .. 2025-09-30."""
    _write_bundle(tmp_path, test_ca, ["shop.example.com"], datetime(2024, 10, 1, tzinfo=UTC),
                  datetime(2025, 9, 30, tzinfo=UTC), "seed")
    r = cp("import", "--cert", tmp_path / "seed.pem", "--key", tmp_path / "seed.key", "--chain",
           tmp_path / "chain.pem", "--origin", "official", "--level", "DV", "--brand", "DigiCert", "--json")
    assert r.code == 0, r.out
    return r.json["id"]


def test_readme_dry_run_example_is_what_the_cli_prints(cp, seed_shop):
    """VA-2, EL-1, PAY-1: the README's `renew --dry-run --json` example, byte for byte (the id aside)."""
    block = _console_blocks()[0]
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    document = block[block.index("{"):]
    assert len(commands) == 2
    assert cp(*shlex.split(commands[0])[1:]).code == 0
    r = cp(*shlex.split(commands[1].replace(README_ID, seed_shop))[1:])
    assert r.code == 0, r.out
    assert r.json == json.loads(document.replace(README_ID, seed_shop))


def test_readme_refusal_example_is_what_the_cli_prints(cp, seed_shop):
    """EL-1(a), EL-5: the README's refusal at 2025-06-01, for people and as the one JSON shape."""
    block = _console_blocks()[1]
    command, *printed = block.replace(README_ID, seed_shop).splitlines()
    r = cp(*shlex.split(command[2:])[1:])
    assert r.code == 3
    assert " ".join((r.out + r.err).split()) == " ".join(" ".join(printed).split())
    shape = re.search(r"With `--json` the same refusal \(dry run or not\) is `(\{.*?\}\})`", tour_section(), re.S)
    promised = json.loads(" ".join(shape.group(1).split()).replace("…", "MESSAGE").replace(README_ID, seed_shop))
    got = cp(*shlex.split(command[2:])[1:], "--json").json
    assert {**got["error"], "message": "MESSAGE"} == promised["error"]


@pytest.mark.parametrize("not_before, not_after, at, count, reissues, claim", [
    ("2024-10-01", "2025-09-30", "2025-09-10T00:00:00Z", 10, 7, "ten for the renewal above ordered on 2025-09-10"),
    ("2025-12-20", "2026-12-20", "2026-11-30T00:00:00Z", 26, 23,
     "26 for a certificate expiring 2026-12-20 renewed on 2026-11-30"),
])
def test_va5_readme_certificate_counts_of_a_3_year_renewal(cp, tmp_path, test_ca, not_before, not_after, at, count,
                                                          reissues, claim):
    """VA-4, VA-5, PL-2: the README's counts of what a 3-year renewal creates — ten certificates for
    one ordered on 2025-09-10, 26 for one ordered on 2026-11-30 (three bought, the rest reissues)."""
    assert claim in " ".join(tour_section().split())
    _write_bundle(tmp_path, test_ca, ["va5.example.com"], datetime.fromisoformat(not_before).replace(tzinfo=UTC),
                  datetime.fromisoformat(not_after).replace(tzinfo=UTC), "va5")
    cid = cp("import", "--cert", tmp_path / "va5.pem", "--key", tmp_path / "va5.key", "--origin", "official",
             "--level", "DV", "--brand", "DigiCert", "--json").json["id"]
    plan = cp("renew", cid, "--years", "3", "--dry-run", "--at", at, "--json").json["plan"]
    assert (len(plan["certificates"]), plan["reissues"], plan["managed_services"]) == (count, reissues, 2)

"""Bulk import: a folder of 10,000 bundles and 1,000 certbot lineages, each one CLI process.

    .venv/bin/python bench/import_bulk.py [--bundles 10000] [--lineages 1000] [--code DIR]

Writes (with `cryptography`, EC P-256 leaves under one intermediate) a folder of `--bundles`
bundles in three layouts (certbot-like cert/chain/privkey, fullchain + key, flat .crt/.key with a
shared intermediate) and a certbot configuration directory of `--lineages` lineages laid out as
certbot 5.8 writes them (``live/NAME/*.pem`` links into ``archive/NAME/*1.pem``, ``renewal/NAME.conf``
with certbot's keys; tests/integration/import/test_import_certbot.py runs the real certbot, which
at ~5 s per issuance against Pebble is too slow for 1,000), then runs

- `certpilot import --dir FOLDER --json` (target >= 200 certificates/s), and again (all skipped);
- `certpilot import --from certbot CONFIG --json`, and again;

printing wall seconds, CPU seconds, certificates per second and the peak RSS of the CLI process.
`--code DIR` runs another checkout's CLI (with this venv).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONF = """version = 5.8.0
archive_dir = {config}/archive/{name}
cert = {config}/live/{name}/cert.pem
privkey = {config}/live/{name}/privkey.pem
chain = {config}/live/{name}/chain.pem
fullchain = {config}/live/{name}/fullchain.pem

# Options used in the renewal process
[renewalparams]
account = 972c62a168100cb90ad5a0698a645eda
key_type = ecdsa
config_dir = {config}
work_dir = /var/lib/letsencrypt
logs_dir = /var/log/letsencrypt
server = https://acme-v02.api.letsencrypt.org/directory
authenticator = {authenticator}
{extra}"""


def _pki():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC).replace(microsecond=0)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("Bench Root")).issuer_name(name("Bench Root"))
            .public_key(root_key.public_key()).serial_number(1).not_valid_before(now - timedelta(days=400))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    inter = (x509.CertificateBuilder().subject_name(name("Bench Intermediate")).issuer_name(root.subject)
             .public_key(inter_key.public_key()).serial_number(2).not_valid_before(now - timedelta(days=400))
             .not_valid_after(now + timedelta(days=3000))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(root_key, hashes.SHA256()))
    inter_pem = inter.public_bytes(serialization.Encoding.PEM)

    def leaf(cn: str) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(inter.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=10)).not_valid_after(now + timedelta(days=80))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(inter_key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    return inter_pem, leaf


def write_folder(root: Path, n: int) -> None:
    """`n` bundles in three layouts (see the module)."""
    inter, leaf = _pki()
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "intermediate.pem").write_bytes(inter)
    for i in range(n):
        cert, key = leaf(f"b{i}.fleet.example.test")
        d = root / f"{i // 1000:02d}" / f"b{i}"
        d.mkdir(parents=True)
        if i % 3 == 0:
            (d / "cert.pem").write_bytes(cert)
            (d / "chain.pem").write_bytes(inter)
            (d / "privkey.pem").write_bytes(key)
        elif i % 3 == 1:
            (d / "fullchain.pem").write_bytes(cert + inter)
            (d / f"b{i}.key").write_bytes(key)
        else:
            (d / f"b{i}.crt").write_bytes(cert)
            (d / f"b{i}.key").write_bytes(key)


def write_certbot(config: Path, n: int) -> None:
    """`n` lineages as certbot writes them (see the module)."""
    inter, leaf = _pki()
    for sub in ("live", "archive", "renewal", "accounts", "renewal-hooks/deploy"):
        (config / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"site{i}.fleet.example.test"
        cert, key = leaf(name)
        archive, live = config / "archive" / name, config / "live" / name
        archive.mkdir()
        live.mkdir()
        for kind, data in (("cert", cert), ("chain", inter), ("fullchain", cert + inter), ("privkey", key)):
            (archive / f"{kind}1.pem").write_bytes(data)
            (live / f"{kind}.pem").symlink_to(f"../../archive/{name}/{kind}1.pem")
        (archive / "privkey1.pem").chmod(0o600)
        auth, extra = (("webroot", f"webroot_path = /var/www/{name},\n[[webroot_map]]\n{name} = /var/www/{name}\n")
                       if i % 2 else ("dns-route53", "renew_hook = systemctl reload nginx\n"))
        (config / "renewal" / f"{name}.conf").write_text(CONF.format(config=config, name=name, authenticator=auth,
                                                                     extra=extra))


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, dict, int]:
    """One CLI process: wall and CPU seconds, its JSON output, its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "certpilot.cli", *args], env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):
        raise SystemExit(f"certpilot {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout), done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=10_000)
    parser.add_argument("--lineages", type=int, default=1_000)
    parser.add_argument("--code", type=Path, default=None)
    args = parser.parse_args()
    code = (args.code or ROOT).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="certpilot-bench-import-"))
    t0 = time.perf_counter()
    write_folder(tmp / "folder", args.bundles)
    write_certbot(tmp / "letsencrypt", args.lineages)
    (tmp / "nginx").mkdir()
    print(f"wrote {args.bundles} bundles and {args.lineages} certbot lineages in {time.perf_counter() - t0:.1f} s")
    env = {**os.environ, "CERTPILOT_HOME": str(tmp / "home"), "PYTHONPATH": str(code),
           "CERTPILOT_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    env.pop("CERTPILOT_DATABASE_URL", None)
    run(["db", "upgrade", "--json"], env, code)  # the schema is made once, not in a measurement
    cases = [("folder", ["import", "--dir", str(tmp / "folder"), "--json"], args.bundles),
             ("certbot", ["import", "--from", "certbot", str(tmp / "letsencrypt"), "--nginx-dir", str(tmp / "nginx"),
                          "--json"], args.lineages)]
    print(f"{'import':<10} {'run':<6} {'wall s':>8} {'cpu s':>7} {'certs/s':>8} {'imported':>8} {'skipped':>8} "
          f"{'refused':>8} {'peak RSS MB':>11}")
    for what, argv, n in cases:
        for attempt in ("first", "again"):
            rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            wall, cpu, out, _ = run(argv, env, code)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            c = out["counts"]
            rss_text = f"{rss / 1024:.0f}" if rss > rss_before else f"<= {rss_before / 1024:.0f}"
            print(f"{what:<10} {attempt:<6} {wall:>8.2f} {cpu:>7.2f} {n / wall:>8.0f} {c['imported']:>8} "
                  f"{c['skipped']:>8} {c['refused']:>8} {rss_text:>11}")
    load = os.getloadavg()
    print(f"load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; target: folder >= 200/s")


if __name__ == "__main__":
    main()

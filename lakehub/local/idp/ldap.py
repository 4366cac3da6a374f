"""OpenLDAP's slapd on loopback, seeded with users and groups, for tests and the local environment.

    handle = start_ldap({"alice": "pw1", "carol": "pw2"}, {"analysts": ["alice"], "sales": ["carol"]})
    handle.url            # ldaps://127.0.0.1:<port>
    handle.ca_file        # the throw-away CA that signed slapd's certificate
    handle.bind_dn, handle.bind_password   # a service account that may search
    handle.stop()

Layout: dc=lakehub,dc=test; users uid=<name>,ou=people; groups cn=<name>,ou=groups
(groupOfNames with member DNs); the service account cn=hub,ou=services.

slapd runs in the foreground (`-d 0`) from a slapd.conf written here (mdb backend), and is
seeded with `ldapadd` over the same TLS listener. With tls=False it listens on plain ldap://
(loopback only).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lakehub.errors import LakehubError
from lakehub.waiting import tries
from lakehub.local.processes import terminate_group

LOOPBACK = "127.0.0.1"
BASE_DN = "dc=lakehub,dc=test"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _find(binary: str) -> str:
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise LakehubError(f"{binary} is not installed; run `make system-packages` (Debian packages slapd, ldap-utils)")


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def make_ca_and_cert(folder: Path, hostnames=("localhost",), ips=(LOOPBACK,)) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate signed by it (files: ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehub test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@dataclass
class LdapServer:
    port: int
    process: subprocess.Popen
    workdir: Path
    tls: bool
    bind_password: str
    root_password: str
    ca_file: Path | None = None
    users: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    _own_workdir: bool = False

    base_dn = BASE_DN
    people_dn = f"ou=people,{BASE_DN}"
    groups_dn = f"ou=groups,{BASE_DN}"
    bind_dn = f"cn=hub,ou=services,{BASE_DN}"
    root_dn = f"cn=admin,{BASE_DN}"

    @property
    def url(self) -> str:
        return f"{'ldaps' if self.tls else 'ldap'}://{LOOPBACK}:{self.port}"

    def user_dn(self, name: str) -> str:
        return f"uid={name},{self.people_dn}"

    def group_dn(self, name: str) -> str:
        return f"cn={name},{self.groups_dn}"

    def client_env(self) -> dict:
        """Environment for OpenLDAP's command-line tools (trust the throw-away CA)."""
        env = dict(os.environ)
        if self.ca_file:
            env["LDAPTLS_CACERT"] = str(self.ca_file)
        return env

    def set_members(self, group: str, members: list[str]) -> None:
        """Replace a group's members while slapd runs (as the directory's administrator)."""
        member_dns = [self.user_dn(m) for m in members] or [self.bind_dn]  # groupOfNames needs one
        ldif = f"dn: {self.group_dn(group)}\nchangetype: modify\nreplace: member\n" + "".join(
            f"member: {dn}\n" for dn in member_dns
        )
        result = subprocess.run(
            [_find("ldapmodify"), "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_password],
            input=ldif,
            capture_output=True,
            text=True,
            env=self.client_env(),
            timeout=30,
        )
        if result.returncode != 0:
            raise LakehubError(f"ldapmodify of {group} failed (exit {result.returncode}): {result.stderr.strip()}")
        self.groups[group] = list(members)

    def stop(self) -> None:
        terminate_group(self.process, timeout=10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _slapd_conf(workdir: Path, root_password: str, tls_files) -> str:
    lines = [f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS]
    lines += [
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        f"pidfile {workdir / 'slapd.pid'}",
        f"argsfile {workdir / 'slapd.args'}",
    ]
    if tls_files:
        ca, cert, key = tls_files
        lines += [f"TLSCACertificateFile {ca}", f"TLSCertificateFile {cert}", f"TLSCertificateKeyFile {key}"]
    lines += [
        "database mdb",
        "maxsize 16777216",
        f'suffix "{BASE_DN}"',
        f'rootdn "cn=admin,{BASE_DN}"',
        f"rootpw {ssha(root_password)}",
        f"directory {workdir / 'data'}",
        "index objectClass,uid,member eq",
        # Passwords: only for binding (and changing one's own); everything else readable once bound.
        "access to attrs=userPassword by self =xw by anonymous auth by * none",
        "access to * by users read by anonymous auth",
    ]
    return "\n".join(lines) + "\n"


def _seed_ldif(users: dict, groups: dict, bind_password: str) -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: lakehub test\ndc: lakehub",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services",
        f"dn: cn=hub,ou=services,{BASE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: hub\nuserPassword: {ssha(bind_password)}",
    ]
    for uid, (name, password) in enumerate(sorted(users.items()), start=10001):
        entries.append(
            f"dn: uid={name},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {name}\ncn: {name}\nsn: {name}\nmail: {name}@lakehub.test\n"
            f"uidNumber: {uid}\ngidNumber: {uid}\nhomeDirectory: /home/{name}\n"
            f"userPassword: {ssha(password)}"
        )
    for group, members in sorted(groups.items()):
        member_lines = (
            "\n".join(f"member: uid={m},ou=people,{BASE_DN}" for m in members) or f"member: cn=hub,ou=services,{BASE_DN}"
        )
        entries.append(f"dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {group}\n{member_lines}")
    return "\n\n".join(entries) + "\n"


def start_ldap(
    users: dict[str, str],
    groups: dict[str, list[str]],
    port: int | None = None,
    tls: bool = True,
    workdir: Path | None = None,
    timeout: float = 20.0,
) -> LdapServer:
    """Start slapd on 127.0.0.1:<port> (ldaps by default), seed it, and return its handle."""
    slapd, ldapadd = _find("slapd"), _find("ldapadd")
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lakehub-ldap-"))
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    root_password = secrets.token_urlsafe(16)
    bind_password = secrets.token_urlsafe(16)
    tls_files = make_ca_and_cert(workdir) if tls else None
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, root_password, tls_files))
    scheme = "ldaps" if tls else "ldap"
    log = open(workdir / "slapd.log", "ab")
    process = subprocess.Popen(
        [slapd, "-d", "0", "-h", f"{scheme}://{LOOPBACK}:{port}/", "-f", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LdapServer(
        port=port,
        process=process,
        workdir=workdir,
        tls=tls,
        bind_password=bind_password,
        root_password=root_password,
        ca_file=tls_files[0] if tls_files else None,
        users=dict(users),
        groups={g: list(m) for g, m in groups.items()},
        _own_workdir=own,
    )
    seed = workdir / "seed.ldif"
    seed.write_text(_seed_ldif(users, groups, bind_password))
    last = ""
    for _ in tries(timeout, interval=0.2):
        if process.poll() is not None:
            server.stop()
            raise LakehubError(f"slapd exited at start with code {process.returncode}; see {workdir / 'slapd.log'}")
        result = subprocess.run(
            [ldapadd, "-x", "-H", server.url, "-D", server.root_dn, "-w", root_password, "-f", str(seed)],
            capture_output=True,
            text=True,
            env=server.client_env(),
            timeout=10,
        )
        if result.returncode == 0:
            return server
        last = ((result.stderr or result.stdout).strip().splitlines() or [""])[-1]
        if result.returncode != 255:  # 255: cannot contact the server yet; anything else is final
            server.stop()
            raise LakehubError(f"seeding slapd failed (ldapadd exit {result.returncode}): {last}")
    server.stop()
    raise LakehubError(f"slapd on port {port} was not ready within {timeout:.0f} s: {last}")

"""Real test packages and repositories, and sandbox roots to install them into.

Debian: ``dpkg-deb --build`` makes the .deb files, ``dpkg-scanpackages -m`` indexes
them into a flat ``file:`` repository, and ``make_apt_root`` lays out a tree apt and
dpkg can work in (empty status database, a sources.list with ``[trusted=yes]``).
RPM: ``rpmbuild -bb`` on spec files written here (``BuildArch: noarch``), indexed with
``createrepo_c``; ``make_dnf_root`` writes the root's dnf.conf, a .repo file with
``gpgcheck=0`` and an os-release that gives dnf its ``releasever``.

Every package installs plain files only (no maintainer scripts), so installing it
into a sandbox never runs anything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from patchwarden.agent.jobs import ExecutionSettings
from patchwarden.collect.dpkg import parse_dpkg_status
from patchwarden.collect.rpm import RPM_QF_FORMAT, parse_rpm_qf

APT_TOOLS = ("dpkg", "dpkg-deb", "dpkg-scanpackages", "apt-get")
DNF_TOOLS = ("rpm", "rpmbuild", "createrepo_c", "dnf")

#: name → version → {path inside the root: file content}
DEB_PACKAGES = {
    "pw-hello": {
        "1.0-1": {"usr/share/pw-hello/version": "hello 1.0\n"},
        "2.0-1": {"usr/share/pw-hello/version": "hello 2.0\n"},
    },
    "pw-broken": {
        "1.0-1": {"usr/share/pw-broken/health": "healthy\n"},
        "2.0-1": {"usr/share/pw-broken/health": "broken\n"},
    },
}
RPM_PACKAGES = {
    "pw-hello": {
        "1.0-1": {"usr/share/pw-hello/version": "hello 1.0"},
        "2.0-1": {"usr/share/pw-hello/version": "hello 2.0"},
    },
    "pw-broken": {
        "1.0-1": {"usr/share/pw-broken/health": "healthy"},
        "2.0-1": {"usr/share/pw-broken/health": "broken"},
    },
}


def require_tools(*tools: str) -> None:
    """Skip the calling test (or module) when a tool is not installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")
    return done


# --------------------------------------------------------------------------- Debian


def build_deb(out_dir: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """One ``Architecture: all`` .deb holding ``files``."""
    tree = out_dir / "build" / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: patchwarden tests <tests@example.org>\n"
        f"Description: {name} test package\n"
    )
    for relative, content in files.items():
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    package = out_dir / f"{name}_{version}_all.deb"
    _run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(package)])
    return package


def build_apt_repo(repo: Path, packages: dict[str, dict[str, dict[str, str]]]) -> Path:
    """A flat repository (``Packages`` at its top) holding every version of ``packages``."""
    repo.mkdir(parents=True)
    for name, versions in packages.items():
        for version, files in versions.items():
            build_deb(repo, name, version, files)
    shutil.rmtree(repo / "build")
    index = _run(["dpkg-scanpackages", "-m", "."], cwd=repo).stdout
    (repo / "Packages").write_bytes(index)
    return repo


#: The folders of an apt sandbox root (docs/agent-jobs.md, "Sandbox root" lists them);
#: without the two under etc/apt, apt warns "Unable to read … - DirectoryExists".
APT_ROOT_FOLDERS = (
    "etc/apt/apt.conf.d",
    "etc/apt/preferences.d",
    "etc/apt/sources.list.d",
    "var/lib/dpkg/info",
    "var/lib/dpkg/updates",
    "var/lib/dpkg/triggers",
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives/partial",
    "var/log/apt",
    "run",
)


def make_apt_root(root: Path, repo: Path) -> Path:
    """An empty Debian tree whose apt reads only ``repo``."""
    for folder in APT_ROOT_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    return root


def dpkg_installed(root: Path) -> dict[str, str]:
    """name → version from the root's dpkg status file (patchwarden.collect's parser)."""
    text = (root / "var/lib/dpkg/status").read_text()
    return {p.name: p.version for p in parse_dpkg_status(text).packages}


# --------------------------------------------------------------------------- RPM


def build_rpm(workdir: Path, repo: Path, name: str, evr: str, files: dict[str, str]) -> Path:
    """One noarch rpm holding ``files`` (``evr`` is ``version-release``)."""
    version, release = evr.rsplit("-", 1)
    lines = [
        f"Name: {name}",
        f"Version: {version}",
        f"Release: {release}",
        "Summary: patchwarden test package",
        "License: MIT",
        "BuildArch: noarch",
        "%description",
        "A package for patchwarden's agent tests.",
        "%install",
    ]
    for relative, content in files.items():
        lines.append(f"mkdir -p %{{buildroot}}/{Path(relative).parent}")
        lines.append(f"echo '{content}' > %{{buildroot}}/{relative}")
    lines += ["%files", *(f"/{relative}" for relative in files)]
    spec = workdir / "SPECS" / f"{name}-{evr}.spec"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text("\n".join(lines) + "\n")
    _run(
        [
            "rpmbuild", "--quiet", "-bb",
            "--define", f"_topdir {workdir}",
            "--define", f"_rpmdir {repo}",
            "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
            str(spec),
        ]
    )  # fmt: skip
    return repo / f"{name}-{evr}.noarch.rpm"


def build_rpm_repo(repo: Path, packages: dict[str, dict[str, dict[str, str]]]) -> Path:
    """A repository with ``repodata/`` holding every version of ``packages``."""
    repo.mkdir(parents=True)
    workdir = repo.parent / f"{repo.name}-rpmbuild"
    for name, versions in packages.items():
        for evr, files in versions.items():
            build_rpm(workdir, repo, name, evr, files)
    _run(["createrepo_c", "-q", str(repo)])
    return repo


def make_dnf_root(root: Path, repo: Path, releasever: str = "9") -> Path:
    """An empty RPM tree whose dnf reads only ``repo``."""
    (root / "etc/yum.repos.d").mkdir(parents=True)
    (root / "etc/dnf").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=0\nbest=True\n")
    (root / "etc/yum.repos.d/patchwarden-test.repo").write_text(
        f"[patchwarden-test]\nname=patchwarden test\nbaseurl=file://{repo}\n"
        "gpgcheck=0\nenabled=1\nmetadata_expire=0\n"
    )
    (root / "etc/os-release").write_text(f'ID=almalinux\nVERSION_ID="{releasever}"\n')
    return root


def rpm_installed(root: Path) -> dict[str, str]:
    """name → version-release from the root's rpm database."""
    output = _run(["rpm", "--root", str(root), "-qa", "--qf", RPM_QF_FORMAT]).stdout
    return {p.name: p.version for p in parse_rpm_qf(output.decode()).packages}


# --------------------------------------------------------------------------- local HTTP


class LocalHttp:
    """An HTTP server on 127.0.0.1 whose answers come from ``respond(path)``.

    ``respond`` returns ``(status, body)``; ``requests`` lists the paths asked for.
    """

    def __init__(self, respond: Callable[[str], tuple[int, bytes]]) -> None:
        self.respond = respond
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, body = outer.respond(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def fetch(url: str) -> bytes:
    """The downloader tests hand to the agent: a plain GET on the local server."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - local test URLs
        body: bytes = answer.read()
        return body


# --------------------------------------------------------------------------- sandbox host


@dataclass
class SandboxHost:
    """A sandbox root, the agent's state folder, and the reboots the jobs asked for.

    ``settings()`` gives execution settings for the root with two hooks (``snapshot``
    touches ``state/snapshot-taken``, ``fail`` exits 1) and one check command,
    ``broken-healthy``, which passes while pw-broken's health file says ``healthy``.
    """

    root: Path
    state: Path
    reboots: list[str] = field(default_factory=list)

    def settings(self, **changes: Any) -> ExecutionSettings:
        values: dict[str, Any] = {
            "journal_dir": self.state / "journal",
            "root": self.root,
            "reboot": lambda: self.reboots.append("reboot"),
            "check_retry_delay": 0.05,
            "hooks": {
                "snapshot": ["touch", str(self.state / "snapshot-taken")],
                "fail": ["false"],
            },
            "check_commands": {
                "broken-healthy": ["grep", "-qx", "healthy", str(self.health)],
            },
        }
        values.update(changes)
        return ExecutionSettings(**values)

    @property
    def health(self) -> Path:
        return self.root / "usr/share/pw-broken/health"

    def journal(self, job_id: int) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / f"journal/{job_id}.json").read_text())
        return data


#: The command check ``SandboxHost`` defines.
HEALTHY = {"type": "command", "name": "broken-healthy"}


def install_job(
    backend: str, job_id: int, *packages: tuple[str, str], **fields: Any
) -> dict[str, Any]:
    """An install payload for ``packages`` (``(name, version)`` pairs)."""
    payload: dict[str, Any] = {
        "job_id": job_id,
        "attempt": 1,
        "kind": "install",
        "backend": backend,
        "packages": [{"name": name, "version": version} for name, version in packages],
    }
    payload.update(fields)
    return payload


def rollback_job(backend: str, job_id: int, of: int, **fields: Any) -> dict[str, Any]:
    """A rollback payload restoring the journal of job ``of``."""
    payload = {"job_id": job_id, "attempt": 1, "kind": "rollback", "backend": backend}
    return {**payload, "rollback_of": of, **fields}


def step_names(result: dict[str, Any]) -> list[str]:
    """The names of a result's steps, in order."""
    return [step["name"] for step in result["steps"]]

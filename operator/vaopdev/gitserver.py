"""A Git server for the GitOps tests: Git's own ``git http-backend`` behind a small HTTP server,
on the kind network's bridge (as the object store for Velero is), so Flux's source-controller
clones over smart HTTP and nothing leaves the machine.

Repositories are folders of commits the test makes with ``Repository.commit``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import podman

_AUTHOR = {
    "GIT_AUTHOR_NAME": "vaop tests",
    "GIT_AUTHOR_EMAIL": "tests@vaop.invalid",
    "GIT_COMMITTER_NAME": "vaop tests",
    "GIT_COMMITTER_EMAIL": "tests@vaop.invalid",
}


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=True
    ).stdout


class _Backend(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` as the CGI program it is, for every request."""

    root: Path  # set on the subclass each server makes

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:
        pass  # a clone is a dozen requests; the test's output stays readable

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        done = subprocess.run(["git", "http-backend"], env=env, input=body, capture_output=True, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Repository:
    """A bare repository the server serves, and a work tree the test commits from."""

    def __init__(self, root: Path, name: str, url: str) -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        self.url = url
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        _git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str], message: str) -> str:
        """Write ``files`` (path -> text; empty text removes the file), commit and push; the new
        revision."""
        for relative, text in files.items():
            target = self.work / relative
            if text:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            else:
                target.unlink(missing_ok=True)
        env = dict(_AUTHOR, PATH="/usr/bin:/bin", HOME=str(self.work))
        _git("add", "--all", cwd=self.work, env=env)
        _git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work, env=env)
        _git("push", "--quiet", "origin", "main", cwd=self.work, env=env)
        return _git("rev-parse", "HEAD", cwd=self.work).decode().strip()


class GitServer:
    """Smart HTTP on the bridge's gateway: pods reach it at ``http://<gateway>:<port>/<name>.git``."""

    def __init__(self, host: str = podman.GATEWAY) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vaop-git-"))
        handler = type("Backend", (_Backend,), {"root": self.root})
        self._server = ThreadingHTTPServer((host, 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-server", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GitServer:
        self._thread.start()
        return self

    def repository(self, name: str) -> Repository:
        return Repository(self.root, name, f"{self.address}/{name}.git")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

"""The embedded Triton Inference Server: the ``tritonserver`` binary bundled in nvidia-pytriton.

It serves a standard model repository (``config.pbtxt`` + ``1/model.py``) on loopback. What it
takes to run here: the wheel's python backend folder lacks the stub, so a backend
folder with links is built under ``workdir``; the stub must load the running interpreter's own
libpython (LD_LIBRARY_PATH) and run model.py with this venv's python (PATH); every endpoint
binds 127.0.0.1, since the defaults are 0.0.0.0; each instance gets its own shared-memory
prefix, so two servers on one machine never collide.

Models load explicitly (``--model-control-mode=explicit`` with ``--load-model`` per name):
the repository may hold models this machine cannot run (a GPU one, say), and readiness then
means exactly the models asked for. ``--strict-readiness`` makes "server ready" include them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from tritonclient.grpc import InferenceServerClient
from tritonclient.utils import InferenceServerException

from alive_tools.embedded.ports import free_ports
from alive_tools.embedded.supervisor import ChildProcess

EXIT_TIMEOUT_S = 5  # shorter leaves /dev/shm/<prefix>* regions behind


class TritonStartError(RuntimeError):
    pass


def _pytriton_dir() -> Path:
    # find_spec, not import: pytriton is installed without its dependencies, only for the binary.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartError("nvidia-pytriton is not installed (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def find_tritonserver() -> Path:
    """The tritonserver binary inside the installed nvidia-pytriton package."""
    binary = _pytriton_dir() / "bin" / "tritonserver"
    if not binary.is_file():
        raise TritonStartError(f"no tritonserver binary at {binary}")
    return binary


def build_backends(workdir: Path) -> Path:
    """A backend folder whose python backend has the stub for this interpreter; returns it."""
    bundled = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {
        "libtriton_python.so": bundled / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": bundled
        / "backends"
        / "python"
        / "triton_python_backend_utils.py",
        "triton_python_backend_stub": bundled
        / "python_backend_stubs"
        / version
        / "triton_python_backend_stub",
    }
    backends = workdir / "backends"
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        if not target.exists():
            raise TritonStartError(f"nvidia-pytriton lacks {target}")
        link = python / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return backends


class TritonServer(ChildProcess):
    """Runs the tritonserver bundled in nvidia-pytriton on loopback with a model repository."""

    def __init__(
        self,
        model_repository: Path,
        workdir: Path,
        *,
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int = 0,
        models: Sequence[str] = ("alive_animator",),
        log_path: Path | None = None,
    ) -> None:
        self.model_repository = model_repository.resolve()
        self.workdir = workdir.resolve()
        self.models = tuple(models)
        self.log_path = log_path or self.workdir / "tritonserver.log"
        self._wanted = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.ports = dict.fromkeys(self._wanted, 0)  # 0 = pick a free port
        self.shm_prefix = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 60.0) -> None:
        """Spawns the server and returns once it and every model are ready."""
        if self._proc is not None:
            return
        backends = build_backends(self.workdir)
        # A restart comes back on the ports of the last start, where clients expect it.
        fresh = iter(free_ports(len(self._wanted)))  # distinct: picked one by one they can clash
        self.ports = {
            name: port or self.ports[name] or next(fresh) for name, port in self._wanted.items()
        }
        # Names the python backend's /dev/shm regions: unique, so instances never share them.
        self.shm_prefix = f"alive_triton_{uuid.uuid4().hex[:12]}_"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self._proc = subprocess.Popen(
                self._command(backends),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,  # its own process group: stop() can reach the stubs
            )
        try:
            self._wait_ready(timeout_s)
        except TritonStartError:
            self.stop()
            raise

    def _command(self, backends: Path) -> list[str]:
        command = [
            str(find_tritonserver()),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        ]
        for endpoint, port in self.ports.items():
            command += [f"--{endpoint}-address=127.0.0.1", f"--{endpoint}-port={port}"]
        command += [f"--load-model={name}" for name in self.models]
        return command

    @staticmethod
    def _environment() -> dict[str, str]:
        env = dict(os.environ)
        # The stub links libpython: without this it finds the system's 3.11 and crashes
        # against this interpreter's standard library.
        libdir = str(sysconfig.get_config_var("LIBDIR"))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (libdir, env.get("LD_LIBRARY_PATH", "")) if part
        )
        # The stub runs model.py with the first python on PATH: this venv's (numpy<2 here).
        venv_bin = os.path.dirname(sys.executable)  # not resolved: a venv's python is a link
        env["PATH"] = os.pathsep.join(part for part in (venv_bin, env.get("PATH", "")) if part)
        return env

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        client = InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                code = self._proc.poll()
                if code is not None:
                    raise TritonStartError(
                        f"tritonserver exited with {code}; log:\n{self._log_tail()}"
                    )
                if self._ready(client):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise TritonStartError(
            f"tritonserver not ready within {timeout_s:.0f} s; log:\n{self._log_tail()}"
        )

    def _ready(self, client: InferenceServerClient) -> bool:
        try:
            return bool(client.is_server_ready(client_timeout=1.0)) and all(
                client.is_model_ready(name, client_timeout=1.0) for name in self.models
            )
        except InferenceServerException:
            return False  # the gRPC port opens only once the models have loaded

    def model_pids(self) -> list[int]:
        """The live processes of its python-backend models (the server's children)."""
        if self._proc is None:
            return []
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue  # gone meanwhile
            if int(parent) == self._proc.pid and state != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def restart(self, timeout_s: float = 60.0) -> None:
        """Stops what is left of it (its model processes) and starts it on its ports."""
        self.stop()
        self.start(timeout_s)

    def stop(self) -> None:
        """SIGTERM, up to the server's exit timeout plus a margin, then SIGKILL; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=EXIT_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Stubs left behind by a crash or a kill share the server's process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

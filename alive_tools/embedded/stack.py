"""The embedded default on one machine: a local broker, a local Triton on CPU, files on disk,
and every stage of the pipeline (alive/pipeline.py) as its own process, in pipeline order.
``alive up``, ``alive run`` and the tests start it.

Beside the stages runs the review web app (services/review/web), the human review queue, at
``review_url``; its development reviewer accounts and passwords are in
``<workdir>/keys/reviewers.json``.

A supervisor (alive_tools/embedded/supervisor.py) restarts the broker, Triton or a service
that dies, with backoff, as Kubernetes would; ``restarts`` in the state counts them.

Everything listens on loopback only, unless the stack is one host of several: then it joins
a broker and a blob store the hosts share (``kafka``, ``shared_blob_url``), reads the keys
and certificates they share (``secrets_dir``) and its gRPC API listens on ``api_host``
(alive_tools/embedded/hosts.py runs such hosts as network namespaces; ``alive up --kafka``
starts one on a machine of your own). Each service gets the shared settings and its own
(``ALIVE_<STAGE>__*``), never another service's. Logs go to ``<workdir>/logs/<name>.log``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from alive.blobs import BlobStore, open_configured_blob_store
from alive.kafka import ensure_topics
from alive.pipeline import GENERATOR, INGEST, PIPELINE, PROVENANCE, REVIEW, StageSpec
from alive.settings import ServiceSettings
from alive_tools.client import AliveClient
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.embedded.ports import free_port
from alive_tools.embedded.supervisor import Supervised, Supervisor
from alive_tools.embedded.triton import TritonServer
from alive_tools.keys import (
    BLOB_KEYRING_FILE,
    TRUST_FILE,
    ApiKeys,
    decision_key_paths,
    ensure_api_keys,
    ensure_blob_keyring,
    ensure_decision_keys,
    ensure_key_dir,
    ensure_reviewers,
    mint_token,
)
from alive_tools.signing_chain import ensure_dev_chain
from services.ingest.auth import CREATOR_SCOPES
from services.moderation.policy import load_policy
from services.review.web.settings import ENV_PREFIX as REVIEW_WEB_PREFIX

# The review web app: a process of its own beside the stages (not a stage).
REVIEW_WEB = "review-web"
REVIEW_WEB_MODULE = "services.review.web"

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "models"


class StackError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    module: str
    http_port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    held: bool = False  # stopped on purpose: the supervisor leaves it down

    def supervised(self) -> Supervised:
        return Supervised(
            self.name,
            running=self.alive,
            wanted=lambda: self.proc is not None and not self.held,
            start=self.spawn,
            exit_code=lambda: self.proc.poll() if self.proc else None,
        )

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # shut down by the stack, not by a terminal's Ctrl-C
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass
class EmbeddedStack:
    workdir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    shutdown_grace_s: float = 10.0
    model_repository: Path = MODEL_REPOSITORY
    # The models Triton loads; the generator serves ALIVE_GENERATOR__MODEL_NAME (extra_env).
    models: Sequence[str] = ("alive_animator",)
    # One host of several: the broker's address (None: start one here), the keys and
    # certificates every host shares (None: this stack's own), the blob store every host
    # shares (None: ALIVE_BLOB_URL with a fresh prefix, else a folder here), where the gRPC
    # API listens, and whether the review web app (one replica) runs on this host.
    kafka: str | None = None
    secrets_dir: Path | None = None
    shared_blob_url: str | None = None
    api_host: str = "127.0.0.1"
    review_web: bool = True

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.logs = self.workdir / "logs"
        # ALIVE_BLOB_URL (an object store) if set, else a folder of the stack's. The broker
        # starts empty each time, so each start takes a fresh prefix in an object store.
        shared_store = os.environ.get("ALIVE_BLOB_URL", "")
        self.blob_url = self.shared_blob_url or (
            f"{shared_store.rstrip('/')}/run-{uuid.uuid4().hex[:12]}"
            if shared_store.startswith("s3://")
            else str(self.workdir / "blobs")
        )
        secrets = (self.secrets_dir or self.workdir).resolve()
        self.cert_dir = secrets / "certs"
        self.key_dir = secrets / "keys"
        self.stage_keys: dict[str, Path] = {}
        self.api_keys = ApiKeys.in_directory(self.key_dir)
        self.decision_keys = decision_key_paths(self.key_dir)
        self.blob_keyring = self.key_dir / BLOB_KEYRING_FILE
        self.broker = EmbeddedBroker(self.logs / "broker.log") if self.kafka is None else None
        self.triton = TritonServer(
            self.model_repository,
            self.workdir / "triton",
            models=self.models,
            log_path=self.logs / "triton.log",
        )
        self.api_port = 0
        self.review_port = 0
        self.services: dict[str, ServiceProcess] = {}
        self.supervisor = Supervisor(self.logs / "supervisor.log", on_restart=self._rewrite_state)
        self._state_path: Path | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka or self._own_broker.bootstrap_servers

    @property
    def _own_broker(self) -> EmbeddedBroker:
        if self.broker is None:
            raise StackError(f"this stack joined the broker at {self.kafka}")
        return self.broker

    @property
    def review_url(self) -> str:
        return f"http://127.0.0.1:{self.review_port}/"

    @property
    def reviewer_file(self) -> Path:
        """Development reviewer accounts: {"name": "password"} (hashes go to the app)."""
        return self.key_dir / "reviewers.json"

    @property
    def api_target(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    @property
    def trust_anchor(self) -> Path:
        return self.cert_dir / "root.pem"

    def token(self, subject: str = "creator", scopes: Sequence[str] = CREATOR_SCOPES) -> str:
        """A development token of this stack's issuer (for the CLI, tests, other tools)."""
        return mint_token(self.api_keys.issuer_key, subject, scopes)

    def client(
        self, subject: str = "creator", scopes: Sequence[str] = CREATOR_SCOPES
    ) -> AliveClient:
        """A client of this stack's API over TLS, calling as ``subject``."""
        return AliveClient(
            self.api_target,
            token=self.token(subject, scopes),
            tls_ca=self.api_keys.tls_ca.read_bytes(),
        )

    def settings(self) -> ServiceSettings:
        """Settings a client in this process uses to reach the stack's broker and blobs."""
        return ServiceSettings(
            kafka={"bootstrap_servers": self.kafka_bootstrap},  # type: ignore[arg-type]
            blob_url=self.blob_url,
            blob_keyring_path=self.blob_keyring,
        )

    def start(self, timeout_s: float = 90.0) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # The embedded broker starts empty, so blobs and ledger entries of an earlier run
        # belong to jobs that no longer exist (a shared store belongs to every host).
        if self.broker is not None and not self.blob_url.startswith("s3://"):
            shutil.rmtree(self.blob_url, ignore_errors=True)
        for old_log in self.logs.glob("*.log"):
            old_log.unlink()
        with ThreadPoolExecutor(max_workers=1) as pool:
            triton_started = pool.submit(self.triton.start, timeout_s)
            if self.broker is not None:
                self.broker.start()
            asyncio.run(ensure_topics(self.settings()))
            triton_started.result()
        # The development signing chain ("make run creates it on first use"): review needs
        # its root before provenance would have made it.
        ensure_dev_chain(self.cert_dir)
        self.stage_keys = ensure_key_dir(self.key_dir)
        self.api_keys = ensure_api_keys(self.key_dir)
        self.decision_keys = ensure_decision_keys(self.key_dir)
        self.blob_keyring = ensure_blob_keyring(self.key_dir)
        self.api_port = free_port()
        for spec in PIPELINE:
            port = free_port()
            self.services[spec.name] = ServiceProcess(
                spec.name,
                spec.module,
                port,
                self._env_for(spec, port),
                self.logs / f"{spec.name}.log",
            )
            self.services[spec.name].spawn()
        if self.review_web:
            self.review_port = free_port()
            port = free_port()
            self.services[REVIEW_WEB] = ServiceProcess(
                REVIEW_WEB,
                REVIEW_WEB_MODULE,
                port,
                self._review_web_env(port),
                self.logs / "review-web.log",
            )
            self.services[REVIEW_WEB].spawn()
        self.wait_ready(list(self.services), timeout_s)
        self._supervise()

    def _supervise(self) -> None:
        broker, triton = self.broker, self.triton
        if broker is not None:  # a shared broker is its owner's to supervise
            self.supervisor.add(
                Supervised(
                    "broker",
                    running=lambda: broker.running,
                    wanted=lambda: broker.wanted,
                    start=self._restart_broker,
                    exit_code=broker.exit_code,
                )
            )
        self.supervisor.add(
            Supervised(
                "triton",
                running=lambda: triton.running,
                wanted=lambda: triton.wanted,
                start=triton.restart,
                exit_code=triton.exit_code,
            )
        )
        for service in self.services.values():
            self.supervisor.add(service.supervised())
        self.supervisor.start()

    def _restart_broker(self) -> None:
        """The broker again, on its port, with the topics (it comes back empty)."""
        self._own_broker.restart()
        asyncio.run(ensure_topics(self.settings()))

    def _own_settings(self, spec: StageSpec) -> dict[str, str]:
        """What this stack wires into a stage's own settings (its ports and paths)."""
        api = self.api_keys
        wiring: dict[StageSpec, dict[str, str]] = {
            INGEST: {
                "grpc_host": self.api_host,
                "grpc_port": str(self.api_port),
                "tls_cert_path": str(api.tls_cert),
                "tls_key_path": str(api.tls_key),
                "jwks_path": str(api.jwks),
                "job_id_key_path": str(api.job_id_key),
            },
            GENERATOR: {"triton_url": self.triton.grpc_url},
            PROVENANCE: {
                "cert_dir": str(self.cert_dir),
                "trust_anchor_path": str(self.trust_anchor),
            },
            REVIEW: {
                "trust_anchor_path": str(self.trust_anchor),
                "decision_public_key_paths": json.dumps([str(self.decision_keys[1])]),
            },
        }
        own = dict(wiring.get(spec, {}))
        if spec.name in self.stage_keys:
            own["attestation_key_path"] = str(self.stage_keys[spec.name])
        return {f"{spec.settings_prefix}{name.upper()}": value for name, value in own.items()}

    def _review_web_env(self, http_port: int) -> dict[str, str]:
        """The review web app's settings: shared ones as a stage's, and its own."""
        passwords = ensure_reviewers(self.reviewer_file)
        own = {
            "PORT": str(self.review_port),
            "SECURE_COOKIES": "false",  # plain HTTP on loopback
            "DECISION_KEY_PATH": str(self.decision_keys[0]),
            "REVIEWERS": json.dumps(passwords.hashes),
            # Reviewers apply the checkpoints' policy: its version bounds a decision's finality.
            "POLICY_VERSION": load_policy().version,
        }
        env = {
            **self._shared_env(http_port, skip=tuple(s.settings_prefix for s in PIPELINE)),
            **{REVIEW_WEB_PREFIX + name: value for name, value in own.items()},
        }
        stages = tuple(s.settings_prefix for s in PIPELINE)
        return {**env, **{k: v for k, v in self.extra_env.items() if not k.startswith(stages)}}

    def _shared_env(self, http_port: int, skip: tuple[str, ...]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        return {
            **inherited,
            "ALIVE_PROFILE": "embedded",
            "ALIVE_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "ALIVE_BLOB_URL": self.blob_url,
            "ALIVE_BLOB_KEYRING_PATH": str(self.blob_keyring),
            "ALIVE_ATTESTATION_TRUST_PATH": str(self.key_dir / TRUST_FILE),
            "ALIVE_HTTP_PORT": str(http_port),
            "ALIVE_SHUTDOWN_GRACE_S": str(self.shutdown_grace_s),
            "PYTHONUNBUFFERED": "1",
        }

    def _env_for(self, spec: StageSpec, http_port: int) -> dict[str, str]:
        others = (
            *(s.settings_prefix for s in PIPELINE if s != spec),
            REVIEW_WEB_PREFIX,
        )
        return {
            **self._shared_env(http_port, skip=others),
            **self._own_settings(spec),
            **{k: v for k, v in self.extra_env.items() if not k.startswith(others)},
        }

    def wait_ready(self, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                service = self.services[name]
                if not service.alive():
                    raise StackError(f"{name} exited; log:\n{self.log_tail(name)}")
                if service.ready():
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout_s} s: {', '.join(waiting)}")
            time.sleep(0.1)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stops a service on purpose with ``sig``: it stays down (the supervisor leaves it)
        until ``restart``."""
        service = self.services[name]
        service.held = True
        service.signal(sig)
        service.wait(self.shutdown_grace_s + 5)

    def restart(self, name: str, timeout_s: float = 60.0) -> None:
        """Starts a service stopped by ``kill`` again, with the same port and settings."""
        service = self.services[name]
        service.spawn()
        service.held = False
        self.wait_ready([name], timeout_s)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to every service at once; their exit codes (0 is a clean shutdown)."""
        self.supervisor.stop()
        for service in self.services.values():
            service.signal(signal.SIGTERM)
        codes = {
            name: service.wait(self.shutdown_grace_s + 5) for name, service in self.services.items()
        }
        self.triton.stop()
        if self.broker is not None:
            self.broker.stop()
        return codes

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    @property
    def blob_root(self) -> Path:
        """The folder of the stack's blobs, when they are on local disk (tests, tools)."""
        if self.blob_url.startswith("s3://"):
            raise StackError(f"the stack's blobs are in {self.blob_url}, not on local disk")
        return Path(self.blob_url)

    def blob_store(self) -> BlobStore:
        """The store the stack's services use (for clients in this process)."""
        return open_configured_blob_store(self.settings())

    def pids(self) -> list[int]:
        """The stack's own processes: the broker, Triton and the services (each may have
        children: Triton's model processes)."""
        procs = [
            self.broker.pid if self.broker is not None else None,
            self.triton.pid,
            *(s.proc.pid for s in self.services.values() if s.proc),
        ]
        return [pid for pid in procs if pid is not None]

    def describe(self) -> dict[str, object]:
        return {
            "api": self.api_target,
            "review_url": self.review_url if self.review_web else None,
            "reviewer_accounts": str(self.reviewer_file),
            "api_tls_ca": str(self.api_keys.tls_ca),
            "token_issuer_key": str(self.api_keys.issuer_key),
            "kafka": self.kafka_bootstrap,
            "triton_grpc": self.triton.grpc_url,
            "triton_metrics": self.triton.metrics_url,
            "blob_url": self.blob_url,
            "blob_keyring": str(self.blob_keyring),
            "trust_anchor": str(self.trust_anchor),
            "logs": str(self.logs),
            "restarts": self.supervisor.restarts(),
            "metrics": {
                name: f"http://127.0.0.1:{s.http_port}/metrics" for name, s in self.services.items()
            },
        }

    def write_state(self, path: Path) -> None:
        """Writes the state to ``path``, and again there after each restart."""
        self._state_path = path
        path.write_text(json.dumps(self.describe(), indent=2))

    def _rewrite_state(self) -> None:
        if self._state_path is not None and self._state_path.exists():
            self._state_path.write_text(json.dumps(self.describe(), indent=2))

    def start_or_stop(self, timeout_s: float = 90.0) -> None:
        """Starts the stack; stops what did start if that fails."""
        try:
            self.start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> EmbeddedStack:
        self.start_or_stop()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The embedded Triton server with the real model repository, over gRPC."""

import asyncio
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from alive_tools.embedded.triton import TritonServer, TritonStartError, find_tritonserver

REPOSITORY = Path(__file__).resolve().parents[2] / "models"
MODEL = "alive_animator"

pytestmark = pytest.mark.stack  # every test here starts tritonserver


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(REPOSITORY, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture
async def client(triton: TritonServer) -> AsyncIterator[InferenceServerClient]:
    api = InferenceServerClient(triton.grpc_url)
    yield api
    await api.close()


def photo(height: int = 112, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (120, 170, 230)  # sky
    image[height // 2 :] = rng.integers(40, 160, (height - height // 2, width, 3))  # ground
    return image


def request(
    image: np.ndarray, prompt: str = "clouds drifting", seed: int = 3, frames: int = 9, fps: int = 8
) -> list[InferInput]:
    values = [
        ("IMAGE", image[np.newaxis], "UINT8"),
        ("PROMPT", np.array([[prompt.encode()]], dtype=np.object_), "BYTES"),
        ("SEED", np.array([[seed]], np.int64), "INT64"),
        ("NUM_FRAMES", np.array([[frames]], np.int32), "INT32"),
        ("FPS", np.array([[fps]], np.int32), "INT32"),
    ]
    inputs = []
    for name, value, datatype in values:
        tensor = InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


async def frames_of(api: InferenceServerClient, inputs: list[InferInput]) -> np.ndarray:
    result = await api.infer(MODEL, inputs, outputs=[InferRequestedOutput("FRAMES")])
    frames = result.as_numpy("FRAMES")
    assert frames is not None
    return frames


def load_model_module():
    path = REPOSITORY / MODEL / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("alive_animator_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Processes in a process group (the server and its python backend stubs)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_binary_is_found() -> None:
    assert find_tritonserver().is_file()


async def test_one_request_returns_the_frames_animate_makes(
    triton: TritonServer, client: InferenceServerClient
) -> None:
    assert triton.grpc_url.startswith("127.0.0.1:")
    image = photo()
    frames = await frames_of(client, request(image))
    assert frames.shape == (1, 9, 112, 64, 3)
    assert frames.dtype == np.uint8
    # Served frames are bit-identical to the pure function's.
    expected = load_model_module().animate(image, "clouds drifting", 3, 9, 8)
    assert np.array_equal(frames[0], expected)
    config = await client.get_model_config(MODEL, as_json=True)
    version = config["config"]["parameters"]["model_version"]["string_value"]
    assert version == load_model_module().MODEL_VERSION


async def test_a_request_with_a_frame_size_gets_frames_of_that_size(
    client: InferenceServerClient,
) -> None:
    inputs = request(photo(64, 112))  # a landscape photo, framed into a portrait frame
    for name in ("WIDTH", "HEIGHT"):
        size = InferInput(name, [1, 1], "INT32")
        size.set_data_from_numpy(np.array([[48 if name == "WIDTH" else 96]], np.int32))
        inputs.append(size)
    assert (await frames_of(client, inputs)).shape == (1, 9, 96, 48, 3)


async def test_concurrent_requests_run_alone_on_free_instances(
    client: InferenceServerClient,
) -> None:
    """The animator renders a batch's items one after another, so the server must not gather
    concurrent requests into one batch on one instance while another is free."""
    image = photo()
    before = await _executions_by_batch_size(client)
    results = await asyncio.gather(
        *(frames_of(client, request(image, seed=seed)) for seed in range(8))
    )
    assert all(frames.shape == (1, 9, 112, 64, 3) for frames in results)
    ran = await _executions_since(client, before, requests=8)
    assert ran == {1: 8}


async def _executions_since(
    client: InferenceServerClient, before: dict[int, int], requests: int
) -> dict[int, int]:
    """Executions by batch size since `before`, once they account for `requests` requests.

    The server counts an execution only after it has sent the responses, so statistics read
    right after the last response may lack the last execution: wait for them (a few seconds
    at most), then report what ran."""
    deadline = time.monotonic() + 10
    while True:
        after = await _executions_by_batch_size(client)
        ran = {
            size: n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)
        }
        if sum(size * n for size, n in ran.items()) >= requests or time.monotonic() > deadline:
            return ran
        await asyncio.sleep(0.05)


async def _executions_by_batch_size(client: InferenceServerClient) -> dict[int, int]:
    stats = await client.get_inference_statistics(MODEL, as_json=True)
    return {
        int(entry["batch_size"]): int(entry["compute_infer"]["count"])
        for entry in stats["model_stats"][0]["batch_stats"]
    }


async def test_bad_request_is_refused_and_the_server_keeps_serving(
    client: InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match=r"NUM_FRAMES must be 1\.\.600, got 0"):
        await frames_of(client, request(photo(), frames=0))
    with pytest.raises(InferenceServerException, match="IMAGE sides"):
        await frames_of(client, request(photo(8, 64)))
    assert (await frames_of(client, request(photo(), frames=2))).shape == (1, 2, 112, 64, 3)


def test_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    server = TritonServer(REPOSITORY, tmp_path)
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 30
    pid = server.pid
    assert pid is not None and alive(pid)
    assert len(group_members(pid)) >= 2  # the server and the model's stub
    server.stop()
    server.stop()  # idempotent
    assert server.pid is None
    assert not alive(pid)
    assert group_members(pid) == []
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))


def test_a_model_that_cannot_load_fails_start_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "models" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n')
    (broken / "1" / "model.py").write_text('raise RuntimeError("this model is broken")\n')
    server = TritonServer(tmp_path / "models", tmp_path / "work", models=("broken",))
    with pytest.raises(TritonStartError, match="this model is broken"):
        server.start(timeout_s=30)
    assert server.pid is None

"""Audio: adds a procedural ambient soundtrack chosen from the prompt and the scene.

Consumes Job from alive.generated; emits it to alive.scored with ``video`` replaced by the
MP4 with an AAC track as long as the video (with fades) and ``soundscape_layers`` naming
what it mixed (waves, wind, rain, birds, city, music). Never vetoes.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
from PIL import Image

from alive.blobs import output_key
from alive.jobs import video_prefix
from alive.pipeline import AUDIO
from alive.scratch import scratch_folder
from alive.stage import CancelToken, Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.audio.mux import mux_audio
from services.audio.settings import AudioSettings
from services.audio.soundscape import choose_layers, render


class AudioStage(Stage[Job, AudioSettings]):
    spec = AUDIO

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        return await asyncio.to_thread(self._score, event, ctx.cancel_token)

    def _score(self, job: Job, token: CancelToken) -> Job:
        """Runs in a thread: stops (Cancelled) between steps once ``token`` is set."""
        with Image.open(io.BytesIO(self.blobs.get_bytes(job.photo))) as photo:
            # Reduced in place (a JPEG decoded at a reduced scale): a full-size RGB copy of a
            # 40-megapixel photo would be 120 MB more.
            photo.thumbnail((256, 256))
            scene = np.asarray(photo.convert("RGB").resize((64, 64)))
        layers = choose_layers(job.prompt, scene)
        # The generator encodes exactly this many frames at this rate: no need to decode.
        duration_s = job.generation.frame_count / job.output.fps
        rate = self.settings.sample_rate
        token.check()
        soundtrack = render(layers, duration_s, sample_rate=rate, seed=job.seed)
        token.check()
        with scratch_folder("audio") as tmp, self.blobs.local_copy(job.video) as silent:
            out = Path(tmp) / "scored.mp4"
            mux_audio(silent, soundtrack, rate, out)
            token.check()
            ref = self.blobs.put_file(
                output_key(video_prefix(job.job_id, "scored"), ".mp4"), out, "video/mp4"
            )
        job.video.CopyFrom(ref)
        del job.soundscape_layers[:]
        job.soundscape_layers.extend(layers)
        return job

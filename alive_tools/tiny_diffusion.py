"""A tiny, randomly initialised image-to-video pipeline (LTX-Video's architecture at toy size),
saved as a pipeline folder exactly as a real checkpoint is laid out, so that the
``i2v_diffusion`` model loads it the way production loads real weights. For tests and
benchmarks on CPU: about 0.5 MB, a call in a fraction of a second. Built in code: nothing is
downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A small word-piece vocabulary is enough for a random text encoder; unknown words fall
# back to letters.
_WORDS = (
    "a the and of in on with make this photo come alive sea sky cloud clouds wave waves water "
    "rain snow wind sun sunset night city street cat dog bird birds tree trees fire light "
    "dance slowly drift move over at dusk"
).split()


def small_t5_tokenizer(words: Sequence[str]) -> Any:
    """A T5 tokenizer built in memory: ``words`` as word pieces, letters for the rest (a
    random or timing-only text encoder needs no real vocabulary)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{word}", -float(i)) for i, word in enumerate(words)]
    pieces += [(letter, -100.0) for letter in "abcdefghijklmnopqrstuvwxyz\u2581"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_tiny_ltx(folder: Path, seed: int = 0) -> Path:
    """Writes the pipeline to ``folder`` (save_pretrained) and returns it."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = small_t5_tokenizer(_WORDS)
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    ).eval()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipeline = LTXImageToVideoPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipeline.save_pretrained(str(folder))
    return folder

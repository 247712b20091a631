"""A tiny, randomly initialised MusicGen for tests, samples and machines without the weights.

``python -m scoretrack.testing DIR [--family F]`` writes one with ``save_pretrained`` (safetensors,
plus a small T5 tokenizer); :func:`scoretrack.model.load_model` loads it exactly as it loads the hub
model. It has the real architecture (T5 text encoder, 32 kHz EnCodec at 50 frames/s with 4 codebooks,
a MusicGen decoder) at toy sizes, so it makes noise, not music, in well under a second per window.
The families are Meta's: ``melody`` (MusicGen-melody, the default), ``stereo-melody``, ``text``
(MusicGen, text only) and ``stereo-text``; the stereo ones predict 8 codebooks, the two channels'
4 interleaved (even rows left, odd right), as musicgen-stereo-* do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# Words for the toy tokenizer's vocabulary; anything else maps to <unk>.
VOCABULARY = ("cinematic strings piano ambient epic drums jazz calm dark bright warm synth orchestral "
              "guitar slow fast happy sad electronic lofi choir brass").split()
FAMILIES = ("melody", "stereo-melody", "text", "stereo-text")


def full_size_config():
    """The configuration of facebook/musicgen-melody (1.5B), for benchmarks with random weights."""
    from transformers import EncodecConfig, MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, T5Config

    text = T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12, vocab_size=32128, d_kv=64)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=2048, num_filters=64,
                          upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], use_causal_conv=False,
                          normalize=False, hidden_size=128, num_lstm_layers=2, chunk_length_s=None, overlap=None)
    decoder = MusicgenMelodyDecoderConfig(vocab_size=2048, hidden_size=1536, num_hidden_layers=48,
                                          num_attention_heads=24, ffn_dim=6144, num_codebooks=4,
                                          pad_token_id=2048, bos_token_id=2048)
    return MusicgenMelodyConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def tiny_config(family: str = "melody"):
    """A toy configuration with the real structure: 32 kHz, 640 samples per frame, 4 codebooks (8 in
    stereo); pad and bos ids at vocab_size, as in the real configs."""
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenMelodyConfig,
                              MusicgenMelodyDecoderConfig, T5Config)

    if family not in FAMILIES:
        raise ValueError(f"family={family!r} must be one of {', '.join(FAMILIES)}")
    stereo = family.startswith("stereo")
    config, decoder_config = ((MusicgenMelodyConfig, MusicgenMelodyDecoderConfig) if family.endswith("melody")
                              else (MusicgenConfig, MusicgenDecoderConfig))

    text = T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, vocab_size=len(VOCABULARY) + 8)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=64, num_filters=4,
                          upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[1.2], use_causal_conv=False,
                          normalize=False, hidden_size=16, num_lstm_layers=1, codebook_dim=16,
                          chunk_length_s=None, overlap=None)
    decoder = decoder_config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                             num_codebooks=8 if stereo else 4, audio_channels=2 if stereo else 1, pad_token_id=64,
                             bos_token_id=64, max_position_embeddings=2048, initializer_factor=0.2)
    # weights 10x the usual spread, so that melody and text visibly steer even this toy model
    return config(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict(),
                  initializer_factor=0.2)


def random_model(config, *, seed: int = 0):
    """A MusicGen (melody or text only, by the config) with random weights and filled EnCodec codebooks
    (random init leaves them 0)."""
    from transformers import MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration

    torch.manual_seed(seed)
    melody = config.model_type == "musicgen_melody"
    model = (MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration)(config)
    for layer in model.audio_encoder.quantizer.layers:
        layer.codebook.embed.normal_(0, 1)
        layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.generation_config.decoder_start_token_id = config.decoder.bos_token_id
    model.generation_config.pad_token_id = config.decoder.pad_token_id
    model.generation_config.max_length = config.decoder.max_position_embeddings
    return model.eval()


def tiny_tokenizer():
    """A T5 (Unigram) tokenizer over :data:`VOCABULARY`, built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in VOCABULARY]
    core = Tokenizer(models.Unigram(pieces, unk_id=2))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    return T5TokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)


def write_tiny_model(folder: str | Path, *, seed: int = 0, family: str = "melody") -> Path:
    """Write the tiny model of ``family`` (see :data:`FAMILIES`) and its tokenizer to ``folder``
    (created if needed) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    random_model(tiny_config(family), seed=seed).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoretrack.testing", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where to write the tiny model (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: %(default)s)")
    parser.add_argument("--family", choices=FAMILIES, default="melody",
                        help="melody: MusicGen-melody; text: MusicGen, text only; stereo-*: their stereo kinds, "
                             "8 codebooks (default: %(default)s)")
    args = parser.parse_args(argv)
    print(write_tiny_model(args.folder, seed=args.seed, family=args.family))
    return 0


if __name__ == "__main__":
    sys.exit(main())

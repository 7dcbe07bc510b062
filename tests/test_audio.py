"""telephony.audio: G.711 mu-law tables against CPython's audioop, frames, energy, resampling."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from telephony import audio

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop: deprecated in 3.11, the reference here
    import audioop

ALL_ULAW = bytes(range(256))
ALL_PCM16 = np.arange(-32768, 32768, dtype="<i2").tobytes()

# Reference points of the G.711 mu-law decoder (ITU-T G.711 table 2a, 16-bit scale).
KNOWN_DECODES = {0xFF: 0, 0x7F: 0, 0x80: 32124, 0x00: -32124, 0xFE: 8, 0x7E: -8, 0xEF: 132, 0xF0: 120}


def test_decode_table_matches_audioop_for_every_byte() -> None:
    assert audio.ulaw_to_pcm16(ALL_ULAW) == audioop.ulaw2lin(ALL_ULAW, 2)


def test_decode_table_matches_known_g711_values() -> None:
    for byte, sample in KNOWN_DECODES.items():
        assert int(audio.ULAW_TO_PCM16[byte]) == sample, hex(byte)


def test_encode_table_matches_audioop_for_every_sample() -> None:
    assert audio.pcm16_to_ulaw(ALL_PCM16) == audioop.lin2ulaw(ALL_PCM16, 2)


def test_digital_silence_encodes_to_0xff() -> None:
    assert audio.pcm16_to_ulaw(b"\x00\x00" * 160) == audio.SILENT_FRAME
    assert audio.SILENT_FRAME == b"\xff" * 160


def test_round_trip_is_stable_after_one_quantisation() -> None:
    once = audio.pcm16_to_ulaw(ALL_PCM16)
    assert audio.pcm16_to_ulaw(audio.ulaw_to_pcm16(once)) == once


def test_odd_length_pcm_is_rejected() -> None:
    with pytest.raises(ValueError, match="even number"):
        audio.pcm16_to_ulaw(b"\x00\x00\x01")


def test_split_frames_pads_the_last_frame_with_silence() -> None:
    frames = audio.split_frames(b"\x10" * 400)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[2] == b"\x10" * 80 + b"\xff" * 80
    assert audio.split_frames(b"") == []
    assert audio.split_frames(b"\x10" * 320) == [b"\x10" * 160] * 2


def test_frame_is_20_ms() -> None:
    assert audio.FRAME_BYTES == 160
    assert audio.duration_ms(audio.SILENT_FRAME) == 20.0
    assert len(audio.silence_ulaw(1000)) == 8000


def test_rms_of_silence_is_zero_and_of_a_sine_is_amplitude_over_root_two() -> None:
    assert audio.ulaw_rms(audio.silence_ulaw(100)) == 0.0
    assert audio.pcm16_rms(b"") == 0.0
    assert audio.ulaw_rms(b"") == 0.0
    tone = audio.tone_ulaw(440, 1000, amplitude=10000)
    assert audio.ulaw_rms(tone) == pytest.approx(10000 / math.sqrt(2), rel=0.02)
    assert audio.pcm16_rms(audio.ulaw_to_pcm16(tone)) == pytest.approx(audio.ulaw_rms(tone))
    assert audio.is_silent(audio.silence_ulaw(20))
    assert not audio.is_silent(tone[:160])


@pytest.mark.parametrize(("amplitude", "loud"), [(8000, True), (2000, True), (300, False), (0, False)])
def test_a_frame_is_loud_from_about_minus_30_dbfs(amplitude: int, loud: bool) -> None:
    frame = audio.tone_ulaw(300, 20, amplitude=amplitude) if amplitude else audio.SILENT_FRAME
    assert audio.is_loud(frame) is loud


def test_line_noise_is_not_loud_and_an_empty_frame_is_not_either() -> None:
    noise = np.random.default_rng(7).normal(0, 100, 160).astype("<i2").tobytes()  # about -50 dBFS
    assert not audio.is_loud(audio.pcm16_to_ulaw(noise))
    assert not audio.is_loud(b"")


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(8000, 16000), (8000, 24000), (24000, 8000), (16000, 8000)]
)
def test_resampling_scales_the_length(from_rate: int, to_rate: int) -> None:
    pcm = np.zeros(from_rate, dtype="<i2").tobytes()  # one second
    out = audio.resample_pcm16(pcm, from_rate, to_rate)
    assert len(out) == 2 * to_rate


def test_resampling_keeps_a_tone_at_its_frequency() -> None:
    t = np.arange(24000) / 24000
    pcm = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    ulaw = audio.pcm16_to_ulaw8k(pcm, 24000)
    assert len(ulaw) == 8000
    spectrum = np.abs(np.fft.rfft(np.frombuffer(audio.ulaw_to_pcm16(ulaw), dtype="<i2")))
    assert int(np.argmax(spectrum)) == 440  # 1 Hz bins over one second


def test_same_rate_is_passed_through() -> None:
    pcm = audio.ulaw_to_pcm16(audio.tone_ulaw(300, 20))
    assert audio.resample_pcm16(pcm, 8000, 8000) == pcm
    assert audio.pcm16_to_ulaw8k(pcm, 8000) == audio.pcm16_to_ulaw(pcm)


def test_ulaw8k_to_pcm16_upsamples_for_speech_engines() -> None:
    assert len(audio.ulaw8k_to_pcm16(audio.silence_ulaw(1000), 16000)) == 2 * 16000


def test_streaming_resampler_matches_the_total_length() -> None:
    resampler = audio.PCM16Resampler(24000, 8000)
    chunk = np.zeros(480, dtype="<i2").tobytes()  # 20 ms at 24 kHz
    out = b"".join(resampler.process(chunk) for _ in range(50)) + resampler.process(b"", last=True)
    assert len(out) == 2 * 8000
